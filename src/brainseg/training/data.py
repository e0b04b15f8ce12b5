"""Training data: memory-mapped slices of the normalize stage, augmented with albumentations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import albumentations as A  # noqa: N812 (the library's documented alias)
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from brainseg.errors import BrainsegError


def build_augmentation(cfg: dict[str, Any], seed: int) -> A.Compose:
    """Flips and affine transforms; the same spatial transform on the mask.

    Args:
        cfg: the `train.augment` params.
        seed: seed of albumentations' own random generator.
    """
    aff = cfg["affine"]
    return A.Compose(
        [
            A.HorizontalFlip(p=cfg["flip"]["p"]),
            A.Affine(
                rotate=(-aff["rotate_deg"], aff["rotate_deg"]),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=aff["p"],
            ),
        ],
        seed=seed,
    )


def load_subject_slices(folder: Path, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Open `image.npy` float16 (s, 4, h, w) and `label.npy` uint8 (s, h, w) of one subject."""
    try:
        image = np.load(folder / "image.npy", mmap_mode="r" if mmap else None)
        label = np.load(folder / "label.npy", mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"{folder}: cannot read training slices: {exc}") from exc
    if image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[1:]:
        raise BrainsegError(f"{folder}: image {image.shape} and label {label.shape} disagree")
    return image, label


class SliceDataset(Dataset):
    """All axial slices of a list of subjects, as (image float32 (4,h,w), regions float32 (3,h,w)).

    Arrays stay memory-mapped; a slice is read only when it is asked for.
    """

    def __init__(self, folders: list[Path], transform: A.Compose | None = None) -> None:
        self.arrays = [load_subject_slices(f) for f in folders]
        self.index = [(i, k) for i, (img, _) in enumerate(self.arrays) for k in range(len(img))]
        self.transform = transform
        self.has_tumor = np.concatenate([np.asarray(lab).reshape(len(lab), -1).any(1)
                                         for _, lab in self.arrays])

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        idx, seed = key if isinstance(key, tuple) else (key, None)
        i, k = self.index[idx]
        image = np.asarray(self.arrays[i][0][k], dtype=np.float32)
        label = np.asarray(self.arrays[i][1][k])
        if self.transform is not None:
            if seed is not None:
                self.transform.set_random_seed(seed)
            out = self.transform(image=image.transpose(1, 2, 0), mask=label)
            image = np.ascontiguousarray(out["image"].transpose(2, 0, 1), dtype=np.float32)
            label = out["mask"]
        return torch.from_numpy(image), torch.from_numpy(label.astype(np.int64))
