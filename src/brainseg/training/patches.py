"""Training data of a 3D U-Net: random patches of each subject's stacked slices.

A subject's volume is its normalize-stage store read as (m, s, h, w) (`stack_volume`: the
kept axial slices, cropped, resized and normalized once, as for the 2D network). An item of
`PatchDataset` is one patch of `patch_size` (d, h, w): items 0..n-1 centre it on a uniformly
drawn voxel of subject i, items n..2n-1 on a tumour voxel of subject i - n (nnU-Net's
foreground oversampling). `BatchPlan(has_tumor, ..., uniform=dataset.uniform)` then draws
`train.tumor_fraction` of every batch from the tumour-centred items and the rest from the
uniform ones. Where the volume is smaller than the patch, the patch is zero-padded (labels
0). Like `SliceDataset`, an item `(index, sample_seed)` depends on that pair alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from brainseg.errors import BrainsegError
from brainseg.training.augment3d import augment_patch
from brainseg.training.data import load_subject_slices


def patch_start(centre: int, length: int, patch: int) -> int:
    """First index along one axis of a `patch`-long window centred on `centre` as nearly as
    the volume's `length` allows: inside the volume when it fits, else covering all of it."""
    low, high = min(0, length - patch), max(0, length - patch)
    return int(np.clip(centre - patch // 2, low, high))


def crop_padded(array: np.ndarray, start: tuple[int, ...], size: tuple[int, ...]) -> np.ndarray:
    """array[..., start:start + size] over its last len(size) axes, zero where the window
    leaves the array (a negative start pads before it). Reads only the window's voxels."""
    lead = array.shape[: array.ndim - len(size)]
    out = np.zeros(lead + tuple(size), dtype=array.dtype)
    src, dst = [], []
    for s, n, length in zip(start, size, array.shape[len(lead):], strict=True):
        lo, hi = max(s, 0), min(s + n, length)
        src.append(slice(lo, max(hi, lo)))
        dst.append(slice(lo - s, lo - s + max(hi - lo, 0)))
    out[(..., *dst)] = array[(..., *src)]
    return out


class PatchDataset(Dataset):
    """Random 3D patches of a list of subjects, as (image, BraTS labels) tensors.

    Args:
        folders: the subjects' folders in the normalize store (image.npy (s, m, h, w),
            label.npy (s, h, w)).
        patch_size: (d, h, w) of a patch (d along the stacked slices).
        augment: the `train.augment` params (None: no augmentation).

    Attributes:
        has_tumor: bool (2n,): the item is tumour-centred (False for the uniform items and for
            subjects without tumour).
        uniform: the indices 0..n-1 of the uniformly centred items.

    Raises:
        BrainsegError: no subject, or a store that cannot be read.
    """

    def __init__(self, folders: list[Path], patch_size: tuple[int, int, int],
                 augment: dict[str, Any] | None = None) -> None:
        if not folders:
            raise BrainsegError("the training split holds no subject")
        self.arrays = [load_subject_slices(f) for f in folders]
        self.patch_size = tuple(int(v) for v in patch_size)
        self.augment = augment
        # tumour voxels (k, 3) in (s, h, w) order, one pass over each label.npy
        self.tumor = [np.argwhere(np.asarray(label) > 0).astype(np.int32)
                      for _, label in self.arrays]
        n = len(folders)
        self.uniform = np.arange(n)
        self.has_tumor = np.concatenate([np.zeros(n, bool), [len(t) > 0 for t in self.tumor]])

    def __len__(self) -> int:
        return 2 * len(self.arrays)

    def centre(self, idx: int, rng: np.random.Generator) -> tuple[int, int, int]:
        """The voxel (s, h, w) item `idx` centres its patch on."""
        n = len(self.arrays)
        subject = idx % n
        tumor = self.tumor[subject]
        if idx >= n and len(tumor):
            return tuple(int(v) for v in tumor[rng.integers(len(tumor))])
        shape = self.arrays[subject][1].shape
        return tuple(int(rng.integers(length)) for length in shape)

    def sample(self, item: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Image float32 (m, d, h, w) and labels uint8 (d, h, w) of one (index, seed) item."""
        idx, seed = int(item[0]), int(item[1])
        if not 0 <= idx < len(self):
            raise IndexError(f"patch item {idx} outside 0..{len(self) - 1}")
        rng = np.random.default_rng(seed)
        image, label = self.arrays[idx % len(self.arrays)]
        centre = self.centre(idx, rng)
        start = tuple(patch_start(c, n, p)
                      for c, n, p in zip(centre, label.shape, self.patch_size, strict=True))
        # image.npy is (s, m, h, w): crop its slices, then move the modality axis first
        img = crop_padded(np.moveaxis(image, 1, 0), start, self.patch_size).astype(np.float32)
        lab = crop_padded(label, start, self.patch_size)
        if self.augment is not None:
            img, lab = augment_patch(img, lab, self.augment, rng)
        return img, lab

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image float32 (m, d, h, w) and labels int64 (d, h, w) with BraTS values."""
        img, lab = self.sample(item)
        return (torch.from_numpy(np.ascontiguousarray(img)),
                torch.from_numpy(np.ascontiguousarray(lab, dtype=np.int64)))
