"""A tiny finished run for the viewer's tests: raw scans, predictions, per_subject.csv, model."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from tests.conftest import write_subject

SUBJECTS = ("TINY-000", "TINY-001", "TINY-002")
DICE = {"TINY-000": (0.912, 0.801, 0.7), "TINY-001": (0.5, 0.25, None),
        "TINY-002": (0.75, 0.6, 0.4)}


def write_run(root: Path, shift: int = 2) -> Path:
    """`root` laid out as a repository after `evaluate`: each prediction is the reference
    moved by `shift` voxels along x (so the error map has true and false positives and
    false negatives)."""
    rows = []
    for i, sid in enumerate(SUBJECTS):
        folder = write_subject(root / "data" / "raw", sid, seed=i)
        seg = nib.load(folder / f"{sid}_seg.nii.gz")
        pred = np.roll(np.asarray(seg.dataobj), shift, axis=0).astype(np.uint8)
        (root / "data" / "predictions").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(pred, seg.affine, seg.header),
                 root / "data" / "predictions" / f"{sid}_seg.nii.gz")
        wt, tc, et = DICE[sid]
        scores = [s for s in (wt, tc, et) if s is not None]
        rows.append({"subject": sid, "dice_WT": wt, "dice_TC": tc,
                     "dice_ET": "n/a" if et is None else et, "dice_mean": np.mean(scores)})
    (root / "reports").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "reports" / "per_subject.csv", index=False)
    return root


@contextlib.contextmanager
def serving(app) -> Iterator[str]:
    """A real uvicorn server in a thread on 127.0.0.1 (a free port); yields its base URL."""
    import uvicorn

    from brainseg.reporting.viewer.view import bind

    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(20)
        sock.close()


CHROMIUM = Path("/usr/bin/chromium")
#: WebGL without a GPU: ANGLE on SwiftShader (software Vulkan).
CHROMIUM_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--ignore-gpu-blocklist"]
READY = "body[data-ready='true'], body[data-ready='error']"


@contextlib.contextmanager
def subject_page(base: str, subject: str, viewport=(1400, 900), timeout_s: float = 300):
    """A headless Chromium (playwright, `CHROMIUM`) on the subject's page, once NiiVue has
    loaded its volumes (the page sets `data-ready` on its body); yields the page."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            page.set_default_timeout(timeout_s * 1000)
            page.goto(f"{base}/subjects/{subject}")
            page.wait_for_selector(READY, state="attached")
            assert page.get_attribute("body", "data-ready") == "true", \
                page.inner_text("#status")
            yield page
        finally:
            browser.close()


def main() -> None:
    """Screenshot of a run's subject page: `python -m tests.reporting.viewer_run --run DIR
    --subject ID --out docs/img/viewer.png` (the README's picture)."""
    import argparse

    from brainseg.reporting.viewer.app import create_app
    from brainseg.reporting.viewer.runs import read_run, run_paths
    from brainseg.reporting.viewer.uploads import Segmenter

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--subject", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    app = create_app(read_run(run_paths(args.run)), Segmenter(None))
    with serving(app) as base, subject_page(base, args.subject) as page:
        page.wait_for_timeout(1000)
        page.screenshot(path=str(args.out))


if __name__ == "__main__":
    main()
