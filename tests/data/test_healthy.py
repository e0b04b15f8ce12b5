"""Tumour-free synthetic subjects: no tumour label, own stream, the pipeline's preprocessing."""

from __future__ import annotations

import numpy as np

from brainseg.data.healthy import healthy_slices
from brainseg.data.preprocess import brain_mask


def test_a_healthy_subject_has_no_tumour_and_is_stored_like_normalize_writes(params):
    image, labels = healthy_slices(params, 0)
    size = params["extract"]["image_size"]
    assert image.dtype == np.float16 and image.shape[1:] == (4, size, size)
    assert labels.dtype == np.uint8 and labels.shape == (len(image), size, size)
    assert not labels.any()
    brain = brain_mask(image.transpose(1, 0, 2, 3))
    assert brain.sum() > 1000
    for c in range(4):  # z-scored inside the brain, 0 outside
        values = image[:, c][brain].astype(np.float64)
        assert abs(values.mean()) < 0.05 and abs(values.std() - 1) < 0.05
    assert not image.transpose(1, 0, 2, 3)[:, ~brain].any()
    again, _ = healthy_slices(params, 0)
    other, _ = healthy_slices(params, 1)
    assert np.array_equal(image, again)
    assert other.shape != image.shape or not np.array_equal(image, other)
