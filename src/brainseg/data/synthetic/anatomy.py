"""Anatomy phase: MNI152 templates deformed into the BraTS grid.

Takes the MNI152 tissue templates (`mni`), draws the per-subject affine transform and smooth
deformation, applies the ventricle scaling and the lesions' mass effect, resamples the GM / WM
maps into a crop of the BraTS grid and widens or narrows the sulcal CSF.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

from brainseg.data.synthetic.common import (
    BRATS_AFFINE,
    BRATS_SHAPE,
    F32,
    MASS_SIGMA,
    Lesion,
    smooth_field,
)
from brainseg.data.synthetic.config import SyntheticConfig
from brainseg.data.synthetic.mni import mni_bbox, templates

_BASE_SCALE = 0.9  # MNI brain (~155 mm tall) shrunk to BraTS-like size
_CENTRE_VOX = np.array([119.5, 125.0, 73.0])  # mean brain centre in the BraTS grid
_VENTRICLE_CENTRE = np.array([98.0, 119.0, 86.0])  # lateral ventricles, MNI152 1 mm voxels
_VENTRICLE_SIGMA = np.array([22.0, 28.0, 14.0])  # Gaussian window of the ventricle scaling


def draw_transform(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Draw the per-subject affine mapping BraTS voxel indices to MNI voxel indices.

    Returns:
        (matrix (3, 3), offset (3,), mean scale) with ``mni = matrix @ p + offset``.
    """
    scale = _BASE_SCALE * rng.uniform(0.93, 1.07) * rng.uniform(0.97, 1.03, 3)
    rot = Rotation.from_euler("xyz", rng.uniform(-5, 5, 3), degrees=True).as_matrix()
    lin = rot @ np.diag(1.0 / scale) @ BRATS_AFFINE[:3, :3]
    centre = _CENTRE_VOX + rng.uniform(-4, 4, 3) * np.array([1.0, 1.0, 0.6])
    mni_centre = (mni_bbox()[0] + mni_bbox()[1]) / 2.0
    return lin, mni_centre - lin @ centre, float(scale.mean())


def _base_coords(
    rng: np.random.Generator,
    config: SyntheticConfig,
    transform: tuple[np.ndarray, np.ndarray, float],
) -> tuple[tuple[slice, ...], np.ndarray]:
    """MNI sampling coordinates of a crop of the BraTS grid: affine plus smooth deformation.

    Returns:
        (box slices in the BraTS grid, float32 coordinates (3, *box shape)).
    """
    lin, offset, scale = transform
    corners = np.array(np.meshgrid(*zip(*mni_bbox(), strict=True))).reshape(3, -1)
    out_corners = np.linalg.solve(lin, corners - offset[:, None])
    margin = 3 * config.deformation_mm + 3
    lo = np.clip(np.floor(out_corners.min(1) - margin), 0, BRATS_SHAPE).astype(int)
    hi = np.clip(np.ceil(out_corners.max(1) + margin), 0, BRATS_SHAPE).astype(int)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    axes = [np.arange(a, b, dtype=F32) for a, b in zip(lo, hi, strict=True)]
    coords = np.empty((3, *shape), dtype=F32)
    n_ctrl = tuple(max(3, round(s / 35)) for s in shape)
    for r in range(3):
        coords[r] = smooth_field(rng, shape, n_ctrl) * F32(config.deformation_mm / scale)
        coords[r] += F32(offset[r]) + lin[r, 0] * axes[0][:, None, None]
        coords[r] += lin[r, 1] * axes[1][None, :, None] + lin[r, 2] * axes[2][None, None, :]
    return box, coords


def _output_centre(coords: np.ndarray, target: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Box voxel whose MNI coordinate is nearest ``target``, searched within 12 voxels of guess."""
    shape = np.array(coords.shape[1:])
    lo = np.clip(np.round(guess).astype(int) - 12, 0, shape - 1)
    hi = np.clip(np.round(guess).astype(int) + 13, lo + 1, shape)
    win = coords[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    dist = ((win - target.astype(F32)[:, None, None, None]) ** 2).sum(axis=0)
    return lo + np.array(np.unravel_index(np.argmin(dist), dist.shape))


def _radial_warp(points: np.ndarray, centre: np.ndarray, sigma: np.ndarray, k: float) -> None:
    """Pull sampling points towards ``centre`` (in place) by ``k`` times a Gaussian window.

    ``p <- c + (p - c) (1 - k w(p))`` with ``w = exp(-|(p - c) / sigma|^2 / 2)``: for k > 0
    the structure at ``c`` is enlarged and its surroundings pushed outwards (k < 0 shrinks it).
    The map stays one-to-one for -2 < k < 1.
    """
    if k == 0:
        return
    q = np.zeros(points.shape[1], dtype=F32)
    for axis in range(3):
        q += ((points[axis] - F32(centre[axis])) * F32(1 / sigma[axis])) ** 2
    w = F32(k) * np.exp(F32(-0.5) * q)
    for axis in range(3):
        points[axis] -= (points[axis] - F32(centre[axis])) * w


def resample_anatomy(
    rng: np.random.Generator,
    config: SyntheticConfig,
    transform: tuple[np.ndarray, np.ndarray, float],
    lesions: list[Lesion],
) -> tuple[tuple[slice, ...], tuple[np.ndarray, ...], list[np.ndarray]]:
    """Deform the MNI templates into a crop of the BraTS grid, with ventricle and mass effects.

    The brain outline is sampled without the ventricle and mass-effect warps (the skull does
    not move); the GM and WM maps are sampled with them.

    Returns:
        (box, (brain bool, gm, wm, csf) float32 maps of the box shape and 0 outside the brain,
        lesion centres as box voxel indices).
    """
    lin, offset, scale = transform
    box, coords = _base_coords(rng, config, transform)
    mask, gm, wm = templates()
    prob = ndi.map_coordinates(mask, coords, order=1, output=F32)
    brain = prob > 0.5
    start = np.array([s.start for s in box])
    centres = [
        _output_centre(coords, les.centre, np.linalg.solve(lin, les.centre - offset) - start)
        for les in lesions
    ]
    inside = coords[:, brain]
    ventricle = rng.uniform(*config.ventricle_scale)
    _radial_warp(inside, _VENTRICLE_CENTRE, _VENTRICLE_SIGMA, 1 - 1 / ventricle)
    for les in lesions:
        _radial_warp(inside, les.centre, np.full(3, MASS_SIGMA * les.radius / scale), les.push)
    maps = []
    for tissue in (gm, wm):
        full = np.zeros(brain.shape, dtype=F32)
        full[brain] = ndi.map_coordinates(tissue, inside, order=1, output=F32)
        maps.append(full)
    csf = np.where(brain, np.clip(prob - maps[0] - maps[1], 0, None), 0).astype(F32)
    return box, _scale_csf(brain, maps[0], maps[1], csf, ventricle), centres


def _scale_csf(
    brain: np.ndarray, gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, factor: float
) -> tuple[np.ndarray, ...]:
    """Widen (factor > 1) or narrow the sulcal CSF by reweighting partial-volume voxels.

    ``csf <- 1 - (1 - csf) ** factor``, GM and WM rescaled so that the total is unchanged.

    Returns:
        (brain, gm, wm, csf).
    """
    sel = brain & (csf > 0) & (csf < 1)
    old = csf[sel]
    new = 1 - (1 - old) ** F32(factor)
    ratio = (1 - new) / (1 - old)
    gm[sel] *= ratio
    wm[sel] *= ratio
    csf[sel] = new
    return brain, gm, wm, csf
