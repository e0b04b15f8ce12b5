"""Lesion-wise metrics on hand-computed cases, for both rule sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brainseg.errors import BrainsegError
from brainseg.evaluation.lesions import (
    LESION_METRICS,
    NO_MATCH_HD95_MM,
    UNMATCHED_HD95_MM,
    LesionRules,
    lesion_metrics,
    pair_scores,
    region_lesion_metrics,
)
from brainseg.evaluation.metrics import dice, hd95

ISO = (1.0, 1.0, 1.0)
OLD = LesionRules("brats2023", dilation=3, min_volume_mm3=50.0)


def cube(shape, corner, size) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[tuple(slice(c, c + size) for c in corner)] = True
    return mask


def test_matched_pair_scores_are_the_whole_volume_ones():
    ref = cube((30, 30, 30), (5, 5, 5), 8)
    pred = cube((30, 30, 30), (6, 5, 5), 8)
    got = lesion_metrics(pred, ref, ISO)
    assert got["lesionwise_dice"] == pytest.approx(dice(pred, ref))
    assert got["lesionwise_hd95"] == pytest.approx(hd95(pred, ref, ISO))
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 0, 0)
    # every surface voxel of each cube is within 1 mm of the other's surface
    assert got["lesionwise_nsd"] == pytest.approx(1.0)
    assert set(got) == set(LESION_METRICS)


def test_brats2025_averages_the_matched_pairs_only():
    shape = (40, 40, 40)
    ref = cube(shape, (2, 2, 2), 6) | cube(shape, (20, 20, 20), 6)  # two lesions
    pred = cube(shape, (2, 2, 2), 6) | cube(shape, (30, 2, 30), 4)  # one exact, one false
    got = lesion_metrics(pred, ref, ISO)
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 1, 1)
    assert got["lesionwise_dice"] == 1.0 and got["lesionwise_hd95"] == 0.0
    assert got["lesionwise_nsd"] == 1.0


def test_brats2025_matches_one_to_one_by_the_largest_dice():
    shape = (40, 20, 20)
    ref = cube(shape, (2, 2, 2), 6) | cube(shape, (10, 2, 2), 3)  # a large and a small lesion
    pred = np.zeros(shape, bool)
    pred[4:12, 2:8, 2:8] = True  # one component overlapping both
    got = lesion_metrics(pred, ref, ISO)
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 0, 1)
    big = cube(shape, (2, 2, 2), 6)
    assert got["lesionwise_dice"] == pytest.approx(dice(pred, big))


def test_brats2025_without_a_match():
    ref = cube((20, 20, 20), (2, 2, 2), 4)
    far = cube((20, 20, 20), (12, 12, 12), 4)
    for pred, reference in ((far, ref), (np.zeros_like(ref), ref), (ref, np.zeros_like(ref))):
        got = lesion_metrics(pred, reference, ISO)
        assert (got["lesionwise_dice"], got["lesionwise_hd95"], got["lesionwise_nsd"]) == (
            0.0, NO_MATCH_HD95_MM, 0.0)
    nothing = lesion_metrics(np.zeros_like(ref), np.zeros_like(ref), ISO)
    assert all(math.isnan(nothing[m]) for m in LESION_METRICS[:3])
    assert nothing["lesionwise_tp"] == nothing["lesionwise_fp"] == nothing["lesionwise_fn"] == 0


def test_brats2023_penalises_false_and_missed_lesions():
    shape = (40, 40, 40)
    ref = cube(shape, (2, 2, 2), 6) | cube(shape, (20, 20, 20), 6)
    pred = cube(shape, (2, 2, 2), 6) | cube(shape, (30, 2, 30), 4)
    got = lesion_metrics(pred, ref, ISO, OLD)
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 1, 1)
    assert got["lesionwise_dice"] == pytest.approx(1 / 3)
    assert got["lesionwise_hd95"] == pytest.approx(2 * UNMATCHED_HD95_MM / 3)
    assert got["lesionwise_nsd"] == pytest.approx(1 / 3)


def test_brats2023_merges_close_lesions_and_reaches_by_dilation():
    shape = (40, 20, 20)
    ref = cube(shape, (2, 2, 2), 6) | cube(shape, (10, 2, 2), 6)  # 2 voxels apart: merged
    pred = cube(shape, (2, 2, 2), 6) | cube(shape, (18, 2, 2), 3)  # 2 voxels from the 2nd
    got = lesion_metrics(pred, ref, ISO, OLD)
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 0, 0)
    assert got["lesionwise_dice"] == pytest.approx(dice(pred, ref))
    apart = lesion_metrics(pred, ref, ISO, LesionRules("brats2023", 0, 50.0))
    assert (apart["lesionwise_tp"], apart["lesionwise_fp"], apart["lesionwise_fn"]) == (1, 1, 1)


def test_brats2023_drops_small_reference_lesions():
    shape = (30, 30, 30)
    ref = cube(shape, (2, 2, 2), 6) | cube(shape, (20, 20, 20), 3)  # 216 and 27 voxels
    pred = ref.copy()
    got = lesion_metrics(pred, ref, ISO, OLD)
    # the 27-voxel lesion is left out, and its prediction is not a false lesion
    assert (got["lesionwise_tp"], got["lesionwise_fp"], got["lesionwise_fn"]) == (1, 0, 0)
    assert got["lesionwise_dice"] == 1.0
    # in mm³: at 2 mm voxels the small lesion is 216 mm³ and counts
    kept = lesion_metrics(pred, ref, (2.0, 2.0, 2.0), OLD)
    assert kept["lesionwise_tp"] == 2


def test_brats2023_empty_masks():
    ref = cube((20, 20, 20), (2, 2, 2), 6)
    empty = np.zeros_like(ref)
    missed = lesion_metrics(empty, ref, ISO, OLD)
    assert (missed["lesionwise_dice"], missed["lesionwise_hd95"]) == (0.0, UNMATCHED_HD95_MM)
    false = lesion_metrics(ref, empty, ISO, OLD)
    assert (false["lesionwise_dice"], false["lesionwise_fp"]) == (0.0, 1)
    nothing = lesion_metrics(empty, empty, ISO, OLD)
    assert (nothing["lesionwise_dice"], nothing["lesionwise_hd95"], nothing["lesionwise_nsd"]) == (
        1.0, 0.0, 1.0)


def test_nsd_counts_surface_voxels_within_the_tolerance():
    ref = cube((30, 30, 30), (5, 5, 5), 10)
    pred = cube((30, 30, 30), (8, 5, 5), 10)  # shifted 3 voxels along x
    _, _, nsd_1 = pair_scores(pred, ref, ISO, 1.0)
    _, _, nsd_3 = pair_scores(pred, ref, ISO, 3.0)
    assert 0.0 < nsd_1 < 1.0 and nsd_3 == 1.0


def test_region_lesion_metrics_regions_and_errors():
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[2:10, 2:10, 2:10] = 2
    ref[4:8, 4:8, 4:8] = 4
    got = region_lesion_metrics(ref, ref, ISO, regions=("WT",))
    assert got["WT"]["lesionwise_dice"] == 1.0
    assert all(math.isnan(v) for v in got["ET"].values())
    with pytest.raises(BrainsegError, match="does not match"):
        region_lesion_metrics(ref, ref[:-1], ISO)
    with pytest.raises(BrainsegError, match="rules 'brats2024'"):
        LesionRules("brats2024")
    assert LesionRules.from_params({"rules": "brats2023", "dilation": 1,
                                    "min_volume_mm3": 2}) == LesionRules("brats2023", 1, 2.0)
