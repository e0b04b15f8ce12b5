from __future__ import annotations

import numpy as np

from brainseg.data.boxes import bounding_box


def test_bounding_box_of_the_true_voxels():
    mask = np.zeros((5, 6, 7), bool)
    assert bounding_box(mask) is None
    mask[1, 2, 3] = mask[3, 2, 6] = True
    assert bounding_box(mask) == (slice(1, 4), slice(2, 3), slice(3, 7))
    assert bounding_box(mask[1]) == (slice(2, 3), slice(3, 4))  # any number of axes


def test_bounding_box_adds_a_margin_within_the_array():
    mask = np.zeros((10, 10, 10), bool)
    mask[1:3, 4:6, 7:10] = True
    assert bounding_box(mask, margin=2) == (slice(0, 5), slice(2, 8), slice(5, 10))


def test_bounding_box_matches_the_extremes_of_argwhere():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = rng.random((9, 8, 7)) > 0.97
        if not mask.any():
            continue
        idx = np.argwhere(mask)
        lo, hi = np.maximum(idx.min(0) - 1, 0), np.minimum(idx.max(0) + 2, mask.shape)
        assert bounding_box(mask, 1) == tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
