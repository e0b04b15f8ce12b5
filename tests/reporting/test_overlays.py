from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from brainseg.reporting.overlays import (
    ERROR_COLORS,
    animate_axial,
    aspects,
    axial_frames,
    brain_box,
    error_rgba,
    planes,
    plot_overlay,
    tumour_centre,
)

PNG = b"\x89PNG\r\n\x1a\n"


def volumes(shape=(40, 36, 30)):
    """FLAIR with a box-shaped brain; reference WT/TC/ET; a prediction shifted by 2 in x."""
    flair = np.zeros(shape, np.float32)
    flair[5:35, 4:32, 3:27] = 100
    ref = np.zeros(shape, np.uint8)
    ref[14:24, 12:20, 10:18] = 2
    ref[16:22, 14:18, 12:16] = 1
    ref[18:20, 15:17, 13:15] = 4
    pred = np.roll(ref, 2, axis=0)
    return flair, ref, pred


def test_tumour_centre_falls_back_to_the_prediction_then_the_volume():
    _, ref, pred = volumes()
    assert tumour_centre(ref, pred) == (19, 16, 14)  # centre of mass of ref > 0 (rounded)
    assert tumour_centre(np.zeros_like(ref), pred) == (21, 16, 14)
    assert tumour_centre(np.zeros_like(ref), np.zeros_like(ref)) == (20, 18, 15)


def test_brain_box_adds_the_margin_within_the_volume():
    flair = np.zeros((10, 10, 20))
    flair[1:3, 4:6, 7:10] = 5.0
    assert brain_box(flair) == (slice(0, 7), slice(0, 10), slice(3, 14))  # MARGIN 4
    assert brain_box(np.zeros((3, 4, 5))) == (slice(0, 3), slice(0, 4), slice(0, 5))


def test_planes_put_anterior_and_superior_up():
    vol = np.zeros((6, 7, 8))
    vol[1, 2, 3] = 1  # x=1, y=2, z=3
    axial, coronal, sagittal = planes(vol, (1, 2, 3))
    assert axial.shape == (7, 6) and axial[2, 1] == 1  # rows y, columns x
    assert coronal.shape == (8, 6) and coronal[8 - 1 - 3, 1] == 1  # rows z (top = last)
    assert sagittal.shape == (8, 7) and sagittal[8 - 1 - 3, 2] == 1
    assert aspects((1.0, 2.0, 5.0)) == [2.0, 5.0, 2.5]


def test_error_rgba_colours_tp_fp_fn_and_leaves_the_rest_clear():
    ref = np.array([[1, 1, 0, 0]], bool)
    pred = np.array([[1, 0, 1, 0]], bool)
    rgba = error_rgba(ref, pred, alpha=0.5)
    for col, name in enumerate(("true positive", "false negative", "false positive")):
        assert tuple(rgba[0, col]) == pytest.approx(to_rgba(ERROR_COLORS[name], 0.5))
    assert rgba[0, 3, 3] == 0


def test_axial_frames_span_the_tumour_plus_margin_within_the_brain():
    flair, ref, pred = volumes()
    brain = flair != 0
    assert axial_frames(ref, pred, brain, 100).tolist() == list(range(6, 22))  # 10..17 +- 4
    capped = axial_frames(ref, pred, brain, 5)
    assert capped.tolist() == [6, 10, 14, 17, 21]
    empty = np.zeros_like(ref)
    assert axial_frames(empty, empty, brain, 100).tolist() == list(range(3, 27))
    edge = np.zeros_like(ref)
    edge[14:24, 12:20, 3:5] = 2  # tumour on the brain's lowest slices: no slice below it
    assert axial_frames(edge, edge, brain, 100).tolist() == list(range(3, 9))


def test_overlay_draws_with_and_without_tumour_and_anisotropic_voxels(tmp_path):
    flair, ref, pred = volumes()
    plot_overlay(flair, ref, pred, "t", tmp_path / "o.png", dpi=50, spacing=(1.0, 1.0, 3.0))
    plot_overlay(flair, np.zeros_like(ref), np.zeros_like(ref), "t", tmp_path / "e.png", dpi=50)
    assert (tmp_path / "o.png").read_bytes()[:8] == PNG == (tmp_path / "e.png").read_bytes()[:8]
    # thick slices (3 mm) stretch the coronal and sagittal planes vertically
    thick, iso = (Image.open(tmp_path / n) for n in ("o.png", "e.png"))
    assert thick.height / thick.width > 1.5 * iso.height / iso.width


def test_gif_has_one_frame_per_slice_and_identical_bytes_twice(tmp_path):
    flair, ref, pred = volumes()
    n = animate_axial(flair, ref, pred, "t", tmp_path / "a.gif", dpi=40, max_frames=6, fps=5)
    animate_axial(flair, ref, pred, "t", tmp_path / "b.gif", dpi=40, max_frames=6, fps=5)
    gif = Image.open(tmp_path / "a.gif")
    assert gif.format == "GIF" and n == gif.n_frames == 6
    assert gif.info["duration"] == 200 and gif.info["loop"] == 0
    assert (tmp_path / "a.gif").read_bytes() == (tmp_path / "b.gif").read_bytes()
    assert not list(tmp_path.glob(".tmp-*"))
