"""Shared pieces of the synthetic generator: the BraTS grid, a planned lesion, smooth fields.

Holds the grid constants (``BRATS_SHAPE``, ``BRATS_AFFINE``), the ``Lesion`` record that
lesion planning writes and the anatomy (mass effect) and tumour phases read, and the smooth
random fields (Gaussian RBFs on a coarse control grid) used by every phase: the anatomy
deformation, the lesion shapes and the intensity texture and bias field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BRATS_SHAPE = (240, 240, 155)
BRATS_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
F32 = np.float32
MASS_SIGMA = 1.2  # mass-effect window std, in units of the lesion's equivalent radius


@dataclass(frozen=True)
class Lesion:
    """One planned lesion: centre in MNI voxels, sizes in output millimetres."""

    centre: np.ndarray  # (3,) MNI152 voxel coordinates
    radius: float  # whole-tumour equivalent radius (mm)
    core_fraction: float  # core volume / whole-tumour volume
    push: float  # mass effect: radial contraction of the sampling at the centre, in [0, 0.7]


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], n_ctrl: tuple[int, ...]
) -> np.ndarray:
    """Smooth random field (zero mean, unit std) from Gaussian RBFs on a coarse control grid.

    Args:
        rng: Random generator.
        shape: Output shape (x, y, z).
        n_ctrl: Number of control points per axis (sets the spatial frequency).

    Returns:
        float32 array of ``shape``.
    """
    coef = rng.standard_normal(n_ctrl).astype(F32)
    bases = []
    for length, n in zip(shape, n_ctrl, strict=True):
        x = np.arange(length, dtype=F32)[:, None]
        centres = np.linspace(0, length - 1, n, dtype=F32)[None]
        sigma = max((length - 1) / max(n - 1, 1), 1.0) * 0.6
        basis = np.exp(-0.5 * ((x - centres) / sigma) ** 2)
        bases.append(basis / basis.sum(axis=1, keepdims=True))
    tmp = np.einsum("abz,yb->ayz", np.einsum("abc,zc->abz", coef, bases[2]), bases[1])
    out = np.zeros(shape, dtype=F32)
    for a in range(n_ctrl[0]):
        out += bases[0][:, a, None, None] * tmp[a][None]
    out -= out.mean()
    return out / max(float(out.std()), 1e-6)


def smooth_lumps(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    amp: tuple[float, ...],
) -> np.ndarray:
    """Sum of smooth random fields with control spacings ``spacing`` (voxels) and amplitudes."""
    out = np.zeros(shape, dtype=F32)
    for step, a in zip(spacing, amp, strict=True):
        out += F32(a) * smooth_field(rng, shape, tuple(max(3, round(s / step)) for s in shape))
    return out
