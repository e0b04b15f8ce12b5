from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from brainseg.evaluation.metrics import (
    HD95_EMPTY_MM,
    dice,
    hd95,
    iou,
    precision,
    recall,
    region_metrics,
)


def _surface_points(mask: np.ndarray, spacing) -> np.ndarray:
    padded = np.pad(mask, 1)
    interior = np.ones_like(padded)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            interior &= np.roll(padded, shift, axis=axis)
    surface = (padded & ~interior)[tuple(slice(1, -1) for _ in range(mask.ndim))]
    return np.argwhere(surface) * np.asarray(spacing)


def brute_hd95(pred, ref, spacing) -> float:
    """Independent HD95: all pairwise distances between surface voxels (6-neighbourhood)."""
    d = cdist(_surface_points(pred, spacing), _surface_points(ref, spacing))
    return max(np.percentile(d.min(axis=1), 95), np.percentile(d.min(axis=0), 95))


def test_hand_computed_overlap():
    pred = np.array([1, 1, 1, 0, 0, 0], bool)
    ref = np.array([0, 1, 1, 1, 1, 0], bool)
    assert dice(pred, ref) == pytest.approx(2 * 2 / (3 + 4))
    assert iou(pred, ref) == pytest.approx(2 / 5)
    assert precision(pred, ref) == pytest.approx(2 / 3)
    assert recall(pred, ref) == pytest.approx(2 / 4)


def test_brats_conventions_for_empty_masks():
    empty, full = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
    full[1, 1, 1] = True
    assert (dice(empty, empty), iou(empty, empty), hd95(empty, empty, (1, 1, 1))) == (1, 1, 0)
    assert (precision(empty, empty), recall(empty, empty)) == (1, 1)
    for a, b in ((empty, full), (full, empty)):
        assert dice(a, b) == 0 and iou(a, b) == 0
        assert hd95(a, b, (1, 1, 1)) == HD95_EMPTY_MM == 373.13
    assert precision(empty, full) == 0 and recall(full, empty) == 0


def test_hd95_of_two_single_voxels_is_their_distance_in_mm():
    a, b = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    a[1, 2, 3], b[4, 6, 3] = True, True
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(5.0)
    assert hd95(a, b, (2.0, 0.5, 3.0)) == pytest.approx(np.hypot(6.0, 2.0))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.8, 1.2, 3.0)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_matches_brute_force_on_random_masks(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (24, 20, 12)
    pred = rng.random(shape) > 0.97
    ref = rng.random(shape) > 0.97
    pred[10:16, 5:12, 3:8] = True
    ref[12:20, 6:15, 2:9] = True
    ref[0, 0, 0] = pred[-1, -1, -1] = True  # touching the borders
    assert hd95(pred, ref, spacing) == pytest.approx(brute_hd95(pred, ref, spacing), abs=1e-6)


def test_region_metrics_use_brats_regions():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:3, 1:3, 1:3] = 2
    ref[1, 1, 1] = 4
    pred = ref.copy()
    pred[1, 1, 1] = 1  # ET missed, still TC and WT
    scores = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert scores["WT"]["dice"] == 1.0 and scores["TC"]["dice"] == 1.0
    assert scores["ET"]["dice"] == 0.0 and scores["ET"]["hd95"] == HD95_EMPTY_MM
