"""Bounding boxes of masks: the one helper behind every crop to where something is."""

from __future__ import annotations

import numpy as np


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...] | None:
    """The smallest box (one slice per axis) holding every True voxel of `mask`.

    Args:
        mask: bool array of any shape.
        margin: voxels added on each side of every axis, clipped to the array.

    Returns:
        The slices, or None when `mask` holds no True voxel.
    """
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=others) if others else mask)
        if idx.size == 0:
            return None
        box.append(slice(max(int(idx[0]) - margin, 0),
                         min(int(idx[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)
