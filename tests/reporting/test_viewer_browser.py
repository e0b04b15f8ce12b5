"""`brainseg view` in a real headless Chromium: NiiVue loads the volumes and draws the
overlays in the project's colours (WebGL on SwiftShader, no GPU needed), and an upload
goes from the form to its segmentation on screen.

Chromium is Debian's `chromium` at /usr/bin/chromium (`.ci/run` installs it); without it the
test skips with the reason, except in CI (CI=true), where it fails.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from matplotlib.colors import rgb_to_hsv
from PIL import Image

from brainseg.data.loading import load_subject
from brainseg.data.modalities import MODALITIES
from brainseg.reporting.overlays import ERROR_COLORS
from brainseg.reporting.plots import REGION_COLORS
from brainseg.reporting.viewer.app import create_app
from brainseg.reporting.viewer.runs import read_run, run_paths
from brainseg.reporting.viewer.uploads import Segmenter
from tests.conftest import write_subject
from tests.evaluation.test_predict import save_varied_checkpoint
from tests.reporting.viewer_run import CHROMIUM, serving, subject_page, write_run

if not CHROMIUM.is_file():
    if os.environ.get("CI") == "true":
        pytest.fail(f"{CHROMIUM} is missing in CI (.ci/run installs Debian's chromium)",
                    pytrace=False)
    pytest.skip(f"{CHROMIUM} not found: the browser test needs Debian's chromium "
                "(apt-get install -y chromium)", allow_module_level=True)


def hue(colour: str) -> float:
    return float(rgb_to_hsv(np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)]) / 255)[0])


def colour_counts(png: bytes, colours: dict[str, str]) -> dict[str, int]:
    """Pixels of the screenshot whose hue is within 0.03 of each colour's, saturated (a
    label blended over the grey scan keeps its hue; the scan, text and crosshair have none)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float64) / 255
    hsv = rgb_to_hsv(rgb)
    vivid = (hsv[..., 1] > 0.35) & (hsv[..., 2] > 0.25)
    counts = {}
    for name, colour in colours.items():
        distance = np.abs(hsv[..., 0] - hue(colour))
        counts[name] = int((vivid & (np.minimum(distance, 1 - distance) < 0.03)).sum())
    return counts


LABELS = {"edema": REGION_COLORS["WT"], "necrosis": REGION_COLORS["TC"],
          "enhancing": REGION_COLORS["ET"]}


def canvas(page, side: str) -> bytes:
    return page.locator(f"#{side}").screenshot()


def test_the_subject_page_draws_the_overlays_in_the_project_colours(tmp_path):
    run = write_run(tmp_path / "run")
    app = create_app(read_run(run_paths(run)), Segmenter(None))
    with serving(app) as base, subject_page(base, "TINY-001", viewport=(1200, 800)) as page:
        page.wait_for_timeout(500)
        shown = {side: colour_counts(canvas(page, side), LABELS) for side in ("left", "right")}
        page.locator("#show-overlays").uncheck()
        page.wait_for_timeout(500)
        hidden = {side: colour_counts(canvas(page, side), LABELS) for side in ("left", "right")}
        page.locator("#show-overlays").check()
        page.locator("#right-overlay").select_option("errors")
        page.wait_for_timeout(500)
        errors = colour_counts(canvas(page, "right"), ERROR_COLORS)
        labels_right = colour_counts(canvas(page, "right"), LABELS)
        legend = page.inner_text("#legend")
        page.goto(f"{base}/")  # the index sorts by a column, both ways
        page.click("th:has-text('mean Dice')")
        ascending = page.locator("#subjects tbody td:first-child").all_inner_texts()
        page.click("th:has-text('mean Dice')")
        descending = page.locator("#subjects tbody td:first-child").all_inner_texts()
    assert ascending == ["TINY-001", "TINY-002", "TINY-000"] == descending[::-1]
    # reference (left) and prediction (right) each show edema, necrosis and enhancing
    for side in ("left", "right"):
        assert all(n > 150 for n in shown[side].values()), shown
        assert all(n < 20 for n in hidden[side].values()), hidden
    # the error map replaces the prediction on the right: its three colours, no edema
    assert all(n > 100 for n in errors.values()), errors
    assert labels_right["edema"] < 20, labels_right
    assert "WT false negative" in legend


def test_an_upload_is_segmented_and_shown_with_its_overlay(tmp_path):
    run = write_run(tmp_path / "run")
    folder = write_subject(tmp_path / "new", "NEW-001", seed=7)
    model = save_varied_checkpoint(tmp_path / "m.pt", load_subject(folder).image)
    app = create_app(read_run(run_paths(run)), Segmenter(str(model)))
    with serving(app) as base, subject_page(base, "TINY-000", viewport=(1200, 800)) as page:
        page.goto(f"{base}/upload")
        for modality in MODALITIES:
            page.set_input_files(f"input[name={modality}]",
                                 str(folder / f"NEW-001_{modality}.nii.gz"))
        page.click("#send")
        page.wait_for_url(f"{base}/uploads/*")
        page.wait_for_selector("body[data-ready='true'], body[data-ready='error']",
                               state="attached")
        assert page.get_attribute("body", "data-ready") == "true", page.inner_text("#status")
        page.wait_for_timeout(500)
        right = colour_counts(canvas(page, "right"), LABELS)
        left = colour_counts(canvas(page, "left"), LABELS)
        href = page.get_attribute("#download", "href")
    assert all(n > 50 for n in right.values()), right  # the model predicts every label
    assert all(n < 20 for n in left.values()), left  # the image alone
    assert href.startswith("/api/uploads/") and href.endswith("/download")
