"""3D augmentation of training patches, driven by the same `train.augment` params as in 2D.

A patch is an image float32 (c, d, h, w) of z-scores and its labels uint8 (d, h, w). In order:
a mirror on each of the three axes (each with `flip.p`), one affine transform (rotation about
all three axes, isotropic scaling, shift; `affine`), then per modality gamma, brightness and
contrast, Gaussian noise and Gaussian blur, each with its p. Every random draw comes from the
one generator passed in (seeded per sample by the batch plan), so a patch depends only on
its sample seed. The intensity transforms are those of the 2D pipeline
(`brainseg.training.transforms`, which work on any (..., c) array) and change the brain only;
the spatial ones move image (trilinear) and labels (nearest) alike, zero outside the patch.
Elastic deformation is 2D only (the params check refuses `elastic.p > 0` with dims 3).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional

from brainseg.training.transforms import (
    BrainBrightnessContrast,
    BrainGamma,
    brain_of,
    draw_gamma,
)


def augment_patch(image: np.ndarray, label: np.ndarray, cfg: dict[str, Any],
                  rng: np.random.Generator, applied: list[tuple[str, Any]] | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Spatial then intensity augmentation of one patch.

    Args:
        image: float32 (c, d, h, w).
        label: uint8 (d, h, w) BraTS labels.
        cfg: the validated `train.augment` params.
        rng: the sample's generator.
        applied: when given, each transform applied is appended to it as (name, params),
            as albumentations' `applied_transforms` lists them, under the names of the 2D
            pipeline's transforms where they are the same (for the figure); the draws do
            not depend on it.

    Returns:
        (image float32 (c, d, h, w), label uint8 (d, h, w)), new arrays.
    """
    image, label = flip_axes(image, label, cfg["flip"]["p"], rng, applied)
    if rng.random() < cfg["affine"]["p"]:
        image, label = affine(image, label, cfg["affine"], rng, applied)
    return intensity(image, cfg, rng, applied), label


def flip_axes(image: np.ndarray, label: np.ndarray, p: float, rng: np.random.Generator,
              applied: list[tuple[str, Any]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mirror image (c, d, h, w) and label (d, h, w) along each spatial axis with chance p."""
    for axis in range(3):
        if rng.random() < p:
            image, label = np.flip(image, axis + 1), np.flip(label, axis)
            _note(applied, "Flip3D", {"axis": "dhw"[axis]})
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def rotation(angles_deg: np.ndarray) -> np.ndarray:
    """The 3x3 rotation by the given angles (degrees) about the d, h and w axes, in turn."""
    out = np.eye(3)
    for axis, angle in enumerate(np.deg2rad(angles_deg)):
        i, j = [a for a in range(3) if a != axis]
        r = np.eye(3)
        r[i, i] = r[j, j] = math.cos(angle)
        r[i, j], r[j, i] = -math.sin(angle), math.sin(angle)
        out = r @ out
    return out


def _note(applied: list[tuple[str, Any]] | None, name: str, values: Any) -> None:
    if applied is not None:
        applied.append((name, values))


def affine(image: np.ndarray, label: np.ndarray, cfg: dict[str, Any],
           rng: np.random.Generator, applied: list[tuple[str, Any]] | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Rotate (uniform in ±rotate_deg about each axis), scale (one zoom in `scale`) and shift
    (up to ±shift of the patch size per axis) about the patch centre, in voxel units.

    The sampling matrix is built in voxels and mapped to the normalized grid of
    `torch.nn.functional.affine_grid`, so a rotation stays a rotation in a non-cubic patch.
    """
    angles = rng.uniform(-cfg["rotate_deg"], cfg["rotate_deg"], 3)
    zoom = rng.uniform(*cfg["scale"])
    shift = rng.uniform(-cfg["shift"], cfg["shift"], 3)
    _note(applied, "Affine3D", {"angles": angles, "zoom": zoom, "shift": shift})
    size = np.asarray(label.shape, dtype=float)  # (d, h, w)
    voxel = rotation(angles) / zoom  # output voxel offset -> input voxel offset
    half = size / 2
    normalized = (voxel * half[None, :]) / half[:, None]  # D^-1 A D in (d, h, w) order
    # affine_grid orders the coordinates (x, y, z) = (w, h, d): reverse both axes
    theta = np.zeros((1, 3, 4))
    theta[0, :, :3] = normalized[::-1, ::-1]
    theta[0, :, 3] = (2 * shift)[::-1]
    grid = functional.affine_grid(torch.from_numpy(theta).float(), [1, 1, *label.shape],
                                  align_corners=False)
    img = functional.grid_sample(torch.from_numpy(image[None]), grid, mode="bilinear",
                                 padding_mode="zeros", align_corners=False)
    lab = functional.grid_sample(torch.from_numpy(label[None, None].astype(np.float32)), grid,
                                 mode="nearest", padding_mode="zeros", align_corners=False)
    return img[0].numpy(), lab[0, 0].numpy().astype(np.uint8)


def intensity(image: np.ndarray, cfg: dict[str, Any], rng: np.random.Generator,
              applied: list[tuple[str, Any]] | None = None) -> np.ndarray:
    """Gamma, brightness/contrast, noise and blur of `train.augment`, one draw per modality.

    Args:
        image: float32 (c, d, h, w).

    Returns:
        float32 (c, d, h, w); the background (zero in every channel) stays 0.
    """
    out = np.ascontiguousarray(np.moveaxis(image, 0, -1))  # (d, h, w, c) as the 2D transforms
    c = out.shape[-1]
    if rng.random() < cfg["gamma"]["p"]:
        gamma = [draw_gamma(rng, *cfg["gamma"]["range"]) for _ in range(c)]
        out = BrainGamma(p=1.0).apply(out, gamma=gamma)
        _note(applied, "BrainGamma", {"gamma": gamma})
    bc = cfg["brightness_contrast"]
    if rng.random() < bc["p"]:
        brightness = rng.uniform(-bc["brightness"], bc["brightness"], c).tolist()
        contrast = rng.uniform(1 - bc["contrast"], 1 + bc["contrast"], c).tolist()
        out = BrainBrightnessContrast(p=1.0).apply(out, brightness=brightness, contrast=contrast)
        _note(applied, "BrainBrightnessContrast", {"brightness": brightness, "contrast": contrast})
    if rng.random() < cfg["noise"]["p"]:
        std = np.float32(rng.uniform(*cfg["noise"]["std"]))
        noise = rng.standard_normal(out.shape, dtype=np.float32) * std
        out = out + noise * brain_of(out)[..., None]
        _note(applied, "BrainGaussianNoise", {"std": float(std)})
    if rng.random() < cfg["blur"]["p"]:
        sigma = rng.uniform(*cfg["blur"]["sigma"], c)
        out = blur(out, sigma)
        _note(applied, "FloatGaussianBlur", {"sigma": sigma, "unit": "vox"})
    return np.ascontiguousarray(np.moveaxis(out, -1, 0), dtype=np.float32)


def blur(image: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """3D Gaussian blur of each channel of (d, h, w, c) with its sigma (voxels, reflected
    borders, no clipping); the background stays 0."""
    blurred = np.stack([ndimage.gaussian_filter(image[..., k], float(s), mode="reflect")
                        for k, s in enumerate(sigma)], axis=-1)
    return np.where(brain_of(image)[..., None], blurred, 0).astype(np.float32)
