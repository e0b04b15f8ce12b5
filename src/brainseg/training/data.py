"""Training data: memory-mapped slices of the normalize stage, augmented with albumentations.

Augmentation randomness is per sample: `SliceDataset[(index, sample_seed)]` reseeds the
transform from `sample_seed` before applying it, so an augmented sample depends only on
(index, sample_seed), never on the number of DataLoader workers, the order in which
samples are drawn, or where a resumed training starts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import albumentations as A  # noqa: N812 (the library's documented alias)
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from brainseg.data.labels import REGIONS, check_regions, common_regions
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import stack_context
from brainseg.errors import BrainsegError
from brainseg.training.transforms import (
    BrainBrightnessContrast,
    BrainGamma,
    BrainGaussianNoise,
    FloatGaussianBlur,
)

# train.augment key -> name of the albumentations transform it builds
AUGMENTATIONS: dict[str, str] = {
    "flip": "VerticalFlip", "affine": "Affine", "elastic": "ElasticTransform",
    "gamma": "BrainGamma", "brightness_contrast": "BrainBrightnessContrast",
    "noise": "BrainGaussianNoise", "blur": "FloatGaussianBlur",
}


def _spatial(cfg: dict[str, Any]) -> list[A.BasicTransform]:
    """Flip, affine and elastic: image linear, mask nearest, zero outside the slice."""
    aff, ela = cfg["affine"], cfg["elastic"]  # ranges: the params schema (sigma >= 1 here)
    border = {"border_mode": cv2.BORDER_CONSTANT, "fill": 0, "fill_mask": 0,
              "interpolation": cv2.INTER_LINEAR, "mask_interpolation": cv2.INTER_NEAREST}
    return [
        # Slices are (x, y) arrays (extract keeps the volume's axis order): rows are the
        # left-right axis, so the left-right mirror is albumentations' *vertical* flip.
        A.VerticalFlip(p=cfg["flip"]["p"]),
        A.Affine(rotate=(-aff["rotate_deg"], aff["rotate_deg"]), scale=tuple(aff["scale"]),
                 translate_percent=(-aff["shift"], aff["shift"]), keep_ratio=True,
                 p=aff["p"], **border),
        A.ElasticTransform(alpha=ela["alpha"], sigma=max(ela["sigma"], 1.0), p=ela["p"],
                           **border),
    ]


def build_augmentation(cfg: dict[str, Any], seed: int, save_applied_params: bool = False,
                       context_slices: int = 0) -> A.Compose:
    """Every transform of `train.augment`, in order: spatial, gamma, brightness/contrast,
    noise, blur (a transform with p = 0 is never applied).

    Images are float32 (h, w, c) z-scores, masks uint8 (h, w) BraTS labels: spatial
    transforms move both alike (nearest neighbour for the mask, so labels stay in
    {0, 1, 2, 4}), and every channel alike; intensity transforms never clip (see
    `brainseg.training.transforms`). With 2.5D input the c = m * (2n + 1) channels are
    the n context slices each side of every modality (`stack_context`): an intensity
    change is drawn per modality and applied to all its slices.

    Args:
        cfg: the `train.augment` params, validated (the schema holds the ranges
            albumentations accepts).
        seed: seed of the transforms' random stream (one stream shared by all of them).
        save_applied_params: record what was applied in the output's `applied_transforms`.
        context_slices: n of `train.model.context_slices` (0: one slice per modality).
    """
    context = 2 * context_slices + 1
    compose = A.Compose(
        [
            *_spatial(cfg),
            BrainGamma(gamma_range=tuple(cfg["gamma"]["range"]), p=cfg["gamma"]["p"],
                       context=context),
            BrainBrightnessContrast(brightness=cfg["brightness_contrast"]["brightness"],
                                    contrast=cfg["brightness_contrast"]["contrast"],
                                    p=cfg["brightness_contrast"]["p"], context=context),
            BrainGaussianNoise(std_range=tuple(cfg["noise"]["std"]), p=cfg["noise"]["p"]),
            FloatGaussianBlur(sigma_range=tuple(cfg["blur"]["sigma"]), p=cfg["blur"]["p"],
                              context=context),
        ],
        save_applied_params=save_applied_params,
    )
    reseed(compose, seed)
    return compose


def reseed(transform: A.Compose, seed: int) -> None:
    """Give every transform of `transform` one shared random stream started from `seed`.

    (`Compose.set_random_seed` would give each transform its own generator with the same
    seed, so that, e.g., two transforms with the same p would always be applied together.)
    """
    transform.set_random_state(np.random.default_rng(seed), random.Random(seed))


def slice_channels(folders: list[Path]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The modalities of the slice store's subjects and the regions all their labels annotate.

    Read from each `meta.json` (one without them, or none: all four modalities, all
    three regions).

    Returns:
        (modalities, regions): the image channels of every subject, in order, and the
        regions annotated in every subject (WT, TC, ET, or WT alone), in `REGIONS` order.

    Raises:
        BrainsegError: a meta.json unreadable, or subjects with different modalities.
    """
    modalities: tuple[str, ...] | None = None
    regions = []
    for folder in folders:
        path = folder / "meta.json"
        try:
            meta = json.loads(path.read_text()) if path.exists() else {}
        except (OSError, ValueError) as exc:
            raise BrainsegError(f"{path}: cannot read: {exc}") from exc
        mods = tuple(meta.get("modalities", MODALITIES))
        if modalities is not None and mods != modalities:
            raise BrainsegError(f"{path}: modalities {' '.join(mods)} differ from "
                                f"{folders[0].name}'s {' '.join(modalities)}: one model takes "
                                "one set of input channels")
        modalities = mods
        regions.append(check_regions(meta.get("regions", REGIONS), str(path)))
    return modalities or MODALITIES, common_regions(regions)


def load_subject_slices(folder: Path, mmap: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Open `image.npy` float16 (s, m, h, w) and `label.npy` uint8 (s, h, w) of one subject."""
    try:
        image = np.load(folder / "image.npy", mmap_mode="r" if mmap else None)
        label = np.load(folder / "label.npy", mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"{folder}: cannot read training slices: {exc}") from exc
    if image.shape[0] != label.shape[0] or image.shape[2:] != label.shape[1:]:
        raise BrainsegError(f"{folder}: image {image.shape} and label {label.shape} disagree")
    return image, label


def slice_positions(folder: Path, count: int) -> tuple[int, ...]:
    """The axial position in the volume of each of a subject's `count` stored slices.

    Read from `meta.json` (geometry z, written by `normalize`); a store without it: the
    slices are taken as contiguous (0..count-1).

    Raises:
        BrainsegError: meta.json unreadable, or its z does not list `count` positions.
    """
    path = folder / "meta.json"
    try:
        meta = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"{path}: cannot read: {exc}") from exc
    z = meta.get("geometry", {}).get("z")
    if z is None:
        return tuple(range(count))
    if len(z) != count:
        raise BrainsegError(f"{path}: geometry.z lists {len(z)} slices, image.npy holds {count}")
    return tuple(int(v) for v in z)


def load_subject_inputs(folder: Path, context_slices: int = 0, mmap: bool = True
                        ) -> tuple[np.ndarray, np.ndarray]:
    """The model inputs (s, m * (2n + 1), h, w) and labels (s, h, w) of one subject.

    `load_subject_slices` stacked with `context_slices` = n neighbours each side
    (`stack_context`; n = 0: the stored slices themselves).
    """
    image, label = load_subject_slices(folder, mmap)
    if context_slices == 0:
        return image, label
    return stack_context(image, context_slices, slice_positions(folder, len(image))), label


class SliceDataset(Dataset):
    """All axial slices of a list of subjects, as (image, BraTS labels) tensors.

    With `context_slices` = n > 0 an image is the 2.5D input of its slice: each modality
    at the n neighbouring slices each side (`stack_context`: modality-major, edges
    repeated), m * (2n + 1) channels, augmented with one spatial transform for all.

    An item is `dataset[index]` (the transform draws from its own running stream) or
    `dataset[(index, sample_seed)]` (the transform is reseeded from `sample_seed` first,
    so the same pair always gives the same sample). Arrays stay memory-mapped; a slice
    is read only when it is asked for.

    Attributes:
        has_tumor: bool (len(self),): the slice holds a label > 0.
    """

    def __init__(self, folders: list[Path], transform: A.Compose | None = None,
                 context_slices: int = 0) -> None:
        self.arrays = [load_subject_slices(f) for f in folders]
        self.context_slices = context_slices
        self.positions = [slice_positions(f, len(img))
                          for f, (img, _) in zip(folders, self.arrays, strict=True)]
        self.index = [(i, k) for i, (img, _) in enumerate(self.arrays) for k in range(len(img))]
        self.transform = transform
        # labels are uint8, so "any label > 0" is "any non-zero"; one pass over label.npy
        self.has_tumor = np.concatenate(
            [np.asarray(label).any(axis=(1, 2)) for _, label in self.arrays] or [np.zeros(0, bool)]
        )

    def __len__(self) -> int:
        return len(self.index)

    def sample(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """The (possibly augmented) arrays of one item: `image` float32 (h, w, c), `mask`
        uint8 (h, w), and `applied_transforms` when the transform records them."""
        idx, seed = (item[0], item[1]) if isinstance(item, tuple | list) else (item, None)
        idx, seed = int(idx), None if seed is None else int(seed)
        i, k = self.index[idx]
        image = stack_context(self.arrays[i][0], self.context_slices, self.positions[i], k)
        data = {"image": np.asarray(image, dtype=np.float32).transpose(1, 2, 0),
                "mask": np.asarray(self.arrays[i][1][k])}
        if self.transform is None:
            return data
        if seed is not None:
            reseed(self.transform, seed)
        return self.transform(**data)

    def __getitem__(self, item: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Image float32 (c, h, w) and labels int64 (h, w) with BraTS values 0/1/2/4
        (c = m * (2n + 1) channels: m modalities, n context slices)."""
        data = self.sample(item)
        image = np.ascontiguousarray(data["image"].transpose(2, 0, 1), dtype=np.float32)
        label = np.ascontiguousarray(data["mask"], dtype=np.int64)
        return torch.from_numpy(image), torch.from_numpy(label)
