"""Metrics against MedPy (an independent implementation) and hand-computed cases."""

from __future__ import annotations

import medpy.metric.binary as medpy
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from brainseg.errors import BrainsegError
from brainseg.evaluation.metrics import (
    HD95_EMPTY_MM,
    METRICS,
    accuracy,
    confusion,
    dice,
    hd95,
    iou,
    mask_metrics,
    precision,
    region_metrics,
    sensitivity,
    specificity,
    volume_difference_cm3,
)

SPACINGS = [(1.0, 1.0, 1.0), (0.8, 1.2, 3.0), (2.0, 0.5, 1.0)]
OVERLAP = ("dice", "iou", "precision", "sensitivity", "specificity", "accuracy", "volume_diff_cm3")


def reference_metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict[str, float]:
    """MedPy's metrics; accuracy and volume difference by their direct formulas."""
    return {
        "dice": medpy.dc(pred, ref),
        "iou": medpy.jc(pred, ref),
        "precision": medpy.precision(pred, ref),
        "sensitivity": medpy.sensitivity(pred, ref),
        "specificity": medpy.specificity(pred, ref),
        "accuracy": float(np.mean(pred == ref)),
        "volume_diff_cm3": (pred.sum() - ref.sum()) * float(np.prod(spacing)) / 1000,
        "hd95": medpy.hd95(pred, ref, voxelspacing=spacing),
    }


def assert_matches_medpy(pred: np.ndarray, ref: np.ndarray, spacing) -> None:
    ours, theirs = mask_metrics(pred, ref, spacing), reference_metrics(pred, ref, spacing)
    assert set(ours) == set(METRICS)
    for name in OVERLAP:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-6), name
    assert ours["hd95"] == pytest.approx(theirs["hd95"], abs=1e-3)


def blobs(rng: np.random.Generator, shape, fraction: float) -> np.ndarray:
    """Smooth random blobs (with interiors, so that surfaces matter) covering ~fraction."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.0)
    return field > np.quantile(field, 1 - fraction)


@pytest.mark.parametrize("spacing", SPACINGS)
@pytest.mark.parametrize("seed", range(4))
def test_random_blobs_match_medpy(seed, spacing):
    rng = np.random.default_rng(seed)
    shape = (30, 26, 18)
    assert_matches_medpy(blobs(rng, shape, 0.2), blobs(rng, shape, 0.15), spacing)


@pytest.mark.parametrize("seed", range(3))
def test_random_noise_and_nested_masks_match_medpy(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (20, 22, 16)
    ref = blobs(rng, shape, 0.3)
    assert_matches_medpy(rng.random(shape) > 0.9, ref, (1.0, 1.5, 2.5))
    inner = ref & ~blobs(rng, shape, 0.5)  # prediction inside the reference
    assert_matches_medpy(inner, ref, (0.9, 0.9, 5.0))
    assert_matches_medpy(ref, ref, (1.0, 1.0, 1.0))


@pytest.mark.parametrize("spacing", SPACINGS)
def test_single_voxels_match_medpy(spacing):
    a, b = np.zeros((9, 8, 7), bool), np.zeros((9, 8, 7), bool)
    a[2, 3, 4], b[6, 1, 0] = True, True
    assert_matches_medpy(a, b, spacing)
    assert_matches_medpy(a, a, spacing)
    big = blobs(np.random.default_rng(7), a.shape, 0.3)
    assert_matches_medpy(a, big, spacing)
    assert_matches_medpy(big, b, spacing)


@pytest.mark.parametrize("spacing", SPACINGS)
def test_masks_touching_the_volume_border_match_medpy(spacing):
    shape = (16, 14, 12)
    pred, ref = np.zeros(shape, bool), np.zeros(shape, bool)
    pred[:6, :, :4] = True  # a slab on three faces of the grid
    ref[3:, 5:, 2:] = True  # a corner block
    assert_matches_medpy(pred, ref, spacing)
    rng = np.random.default_rng(3)
    noisy = pred | (blobs(rng, shape, 0.2) & (rng.random(shape) > 0.2))
    assert_matches_medpy(noisy, ref | np.pad(np.ones((2, 2, 2), bool), ((14, 0), (0, 12), (10, 0))),
                         spacing)


def test_surface_is_the_connectivity_one_erosion_as_in_medpy():
    # A plate with a hole: with a 6-neighbour cross the voxels diagonal to the hole
    # stay interior, with the full 26-neighbour cube they become surface.
    rng = np.random.default_rng(11)
    pred, ref = blobs(rng, (24, 24, 16), 0.35), blobs(rng, (24, 24, 16), 0.35)
    spacing = (1.0, 1.0, 2.0)
    ours = hd95(pred, ref, spacing)
    assert ours == pytest.approx(medpy.hd95(pred, ref, voxelspacing=spacing, connectivity=1),
                                 abs=1e-3)
    full = medpy.hd95(pred, ref, voxelspacing=spacing, connectivity=3)
    assert abs(ours - full) > 1e-3  # the test can tell the two conventions apart


def brute_hd95(pred: np.ndarray, ref: np.ndarray, spacing) -> float:
    """Independent HD95: all pairwise distances between surface voxels (6-neighbourhood)."""
    def surface_points(mask):
        padded = np.pad(mask, 1)
        interior = np.ones_like(padded)
        for axis in range(mask.ndim):
            for shift in (-1, 1):
                interior &= np.roll(padded, shift, axis=axis)
        surface = (padded & ~interior)[tuple(slice(1, -1) for _ in range(mask.ndim))]
        return np.argwhere(surface) * np.asarray(spacing)

    d = cdist(surface_points(pred), surface_points(ref))
    return float(np.percentile(np.concatenate([d.min(axis=1), d.min(axis=0)]), 95))


@pytest.mark.parametrize("spacing", SPACINGS[:2])
def test_hd95_matches_brute_force_distances(spacing):
    rng = np.random.default_rng(5)
    pred, ref = blobs(rng, (20, 18, 12), 0.2), blobs(rng, (20, 18, 12), 0.2)
    ref[0, 0, 0] = pred[-1, -1, -1] = True
    assert hd95(pred, ref, spacing) == pytest.approx(brute_hd95(pred, ref, spacing), abs=1e-6)


def test_hd95_of_two_single_voxels_is_their_distance_in_mm():
    a, b = np.zeros((10, 10, 10), bool), np.zeros((10, 10, 10), bool)
    a[1, 1, 1], b[1, 1, 4] = True, True  # 3 voxels apart along z
    assert hd95(a, b, (1.0, 2.0, 3.0)) == pytest.approx(9.0)
    a[1, 1, 1], b[1, 1, 4] = False, False
    a[1, 2, 3], b[4, 6, 3] = True, True
    assert hd95(a, b, (1.0, 1.0, 1.0)) == pytest.approx(5.0)
    assert hd95(a, b, (1.0, 2.0, 3.0)) == pytest.approx(np.hypot(3.0, 8.0))


def test_hd95_pools_both_directions_before_the_percentile():
    pred, ref = np.zeros((3, 3, 12), bool), np.zeros((3, 3, 12), bool)
    pred[1, 1, 0] = True
    ref[1, 1, 0] = ref[1, 1, 10] = True
    # distances: pred->ref [0], ref->pred [0, 10]; pooled [0, 0, 10]: 95th percentile
    # = 0 + 0.9 * 10 (linear interpolation); the max of the directed ones would be 9.5.
    assert hd95(pred, ref, (1.0, 1.0, 1.0)) == pytest.approx(9.0)
    assert hd95(ref, pred, (1.0, 1.0, 1.0)) == pytest.approx(9.0)


def test_hand_computed_overlap_counts_and_volume():
    pred, ref = np.zeros((2, 3, 1), bool), np.zeros((2, 3, 1), bool)
    pred[0, :, 0] = True  # 3 voxels
    ref[0, 1:, 0] = ref[1, :2, 0] = True  # 4 voxels, 2 shared
    assert confusion(pred, ref) == (2, 1, 2, 1)
    assert dice(pred, ref) == pytest.approx(2 * 2 / (3 + 4))
    assert iou(pred, ref) == pytest.approx(2 / 5)
    assert precision(pred, ref) == pytest.approx(2 / 3)
    assert sensitivity(pred, ref) == pytest.approx(2 / 4)
    assert specificity(pred, ref) == pytest.approx(1 / 2)
    assert accuracy(pred, ref) == pytest.approx(3 / 6)
    assert volume_difference_cm3(pred, ref, (1.0, 2.0, 3.0)) == pytest.approx(-6 / 1000)
    assert volume_difference_cm3(ref, pred, (1.0, 2.0, 3.0)) == pytest.approx(6 / 1000)


def test_both_empty_is_a_perfect_score():
    # MedPy gives NaN (Dice), 0 (precision, recall) and an exception (HD95) here.
    empty = np.zeros((5, 4, 3), bool)
    scores = mask_metrics(empty, empty, (1.0, 2.0, 3.0))
    assert scores == {"dice": 1.0, "iou": 1.0, "precision": 1.0, "sensitivity": 1.0,
                      "specificity": 1.0, "accuracy": 1.0, "hd95": 0.0, "volume_diff_cm3": 0.0}


@pytest.mark.parametrize("spacing", SPACINGS)
def test_exactly_one_empty_scores_zero_and_the_hd95_constant(spacing):
    empty, some = np.zeros((6, 5, 4), bool), np.zeros((6, 5, 4), bool)
    some[1:3, 1:4, 0:2] = True  # 12 voxels
    voxel_cm3 = float(np.prod(spacing)) / 1000
    for pred, ref, sign in ((empty, some, -1), (some, empty, 1)):
        scores = mask_metrics(pred, ref, spacing)
        assert scores["dice"] == scores["iou"] == 0.0
        assert scores["precision"] == scores["sensitivity"] == 0.0
        assert scores["hd95"] == HD95_EMPTY_MM == 373.13
        assert scores["volume_diff_cm3"] == pytest.approx(sign * 12 * voxel_cm3)
        # specificity and accuracy stay defined: MedPy's values
        assert scores["specificity"] == pytest.approx(medpy.specificity(pred, ref), abs=1e-6)
        assert scores["accuracy"] == pytest.approx((120 - 12) / 120)
    with pytest.raises(RuntimeError):  # why the convention: MedPy has no HD95 here
        medpy.hd95(empty, some)
    assert np.linalg.norm([240, 240, 155]) == pytest.approx(HD95_EMPTY_MM, abs=5e-3)


def test_specificity_when_the_reference_fills_the_grid():
    full = np.ones((3, 3, 3), bool)
    partial = full.copy()
    partial[0, 0, 0] = False
    assert specificity(full, full) == 1.0  # complements both empty
    assert specificity(partial, full) == 0.0  # only the reference's complement is empty


@pytest.mark.parametrize("seed", range(3))
def test_region_metrics_match_medpy_per_region(seed):
    rng = np.random.default_rng(seed)
    shape, spacing = (28, 24, 16), (0.9, 1.1, 2.5)
    ref = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for labels in (ref, pred):
        labels[blobs(rng, shape, 0.25)] = 2
        labels[blobs(rng, shape, 0.12) & (labels > 0)] = 1
        labels[blobs(rng, shape, 0.08) & (labels > 0)] = 4
    scores = region_metrics(pred, ref, spacing)
    for region, values in (("WT", (1, 2, 4)), ("TC", (1, 4)), ("ET", (4,))):
        theirs = reference_metrics(np.isin(pred, values), np.isin(ref, values), spacing)
        for name in METRICS:
            tol = 1e-3 if name == "hd95" else 1e-6
            assert scores[region][name] == pytest.approx(theirs[name], abs=tol), (region, name)


def test_region_metrics_use_brats_regions_and_conventions():
    ref = np.zeros((6, 6, 6), np.uint8)
    ref[1:3, 1:3, 1:3] = 2
    ref[1, 1, 1] = 4
    pred = ref.copy()
    pred[1, 1, 1] = 1  # ET missed, still TC and WT
    scores = region_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert list(scores) == ["WT", "TC", "ET"] and list(scores["WT"]) == list(METRICS)
    assert scores["WT"]["dice"] == 1.0 and scores["TC"]["dice"] == 1.0
    assert scores["ET"]["dice"] == 0.0 and scores["ET"]["hd95"] == HD95_EMPTY_MM
    assert scores["ET"]["volume_diff_cm3"] == pytest.approx(-0.001)
    assert scores["ET"]["accuracy"] == pytest.approx(215 / 216)
    nothing = region_metrics(np.zeros_like(ref), np.zeros_like(ref), (1.0, 1.0, 1.0))
    assert all(nothing[r]["dice"] == 1.0 and nothing[r]["hd95"] == 0.0 for r in nothing)


def test_region_metrics_refuse_mismatched_grids():
    with pytest.raises(BrainsegError, match=r"prediction shape \(4, 4, 4\).*\(4, 4, 5\)"):
        region_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 5), np.uint8), (1, 1, 1))
    with pytest.raises(BrainsegError, match="spacing"):
        region_metrics(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8), (1, 1))
