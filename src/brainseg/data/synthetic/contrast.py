"""Contrast phase: tissue intensities, bias field, Rician noise and scanner gain.

With domain randomization the tissue intensities are drawn at random and the image is degraded
(random blur and thick slices along a random axis) before the noise is added.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from brainseg.data.synthetic.common import F32, smooth_field
from brainseg.data.synthetic.config import SyntheticConfig

# Base intensities per modality, before jitter and gain:
# (csf, gm, wm, edema, necrosis, enhancing, non-enhancing core of lower-grade tumours).
_INTENSITY = {
    "t1": (120.0, 330.0, 450.0, 300.0, 160.0, 320.0, 220.0),
    "t1ce": (120.0, 320.0, 440.0, 295.0, 150.0, 760.0, 215.0),
    "t2": (1800.0, 700.0, 450.0, 1250.0, 1500.0, 950.0, 1300.0),
    "flair": (60.0, 380.0, 300.0, 500.0, 330.0, 460.0, 470.0),
}
_DR_INTENSITY = (20.0, 2000.0)  # domain randomization: tissue intensity range, before gain


def _intensities(
    rng: np.random.Generator, modality: str, config: SyntheticConfig, lower_grade: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject tissue intensities of one modality.

    Returns:
        ((csf, gm, wm), (edema, label 1, enhancing)) as float64 arrays.
    """
    if config.domain_randomization:
        values = rng.uniform(*_DR_INTENSITY, 7)
    else:
        jit = config.intensity_jitter
        values = np.array(_INTENSITY[modality]) * rng.uniform(1 - jit, 1 + jit, 7)
    label1 = values[6] if lower_grade else values[4]
    enhancing = values[5]
    if config.necrosis_t1_contrast != 1 and modality in ("t1", "t1ce"):
        label1 = values[2] + config.necrosis_t1_contrast * (label1 - values[2])
    if config.enhancement_contrast != 1 and modality == "t1ce":
        enhancing = values[2] + config.enhancement_contrast * (enhancing - values[2])
    return values[:3], np.array([values[3], label1, enhancing])


def synthesize_contrast(
    rng: np.random.Generator,
    modality: str,
    tissues: tuple[np.ndarray, ...],
    tumor: tuple[tuple[slice, ...], list[np.ndarray]],
    config: SyntheticConfig,
    lower_grade: bool,
) -> np.ndarray:
    """Synthesise one modality (float32, box shape) from tissue maps and tumour weights."""
    brain, gm, wm, csf = tissues
    (i_csf, i_gm, i_wm), i_tum = _intensities(rng, modality, config, lower_grade)
    img = csf * F32(i_csf) + gm * F32(i_gm) + wm * F32(i_wm)
    tloc, weights = tumor
    sub, shape = img[tloc], img[tloc].shape
    texture = 1 + F32(config.tumor_heterogeneity) * smooth_field(
        rng, shape, tuple(max(3, s // 6) for s in shape))
    sub *= 1 - sum(weights)
    for weight, value in zip(weights, i_tum, strict=True):
        sub += weight * texture * F32(value)
    if config.texture > 0:
        img *= np.maximum(1 + F32(config.texture) * _band_noise(rng, img.shape), 0)
    bias = smooth_field(rng, img.shape, (3, 3, 3))
    img *= np.exp(F32(config.bias_field) * bias / max(float(np.abs(bias).max()), 1e-6))
    if config.domain_randomization:
        img = _degrade(rng, img)
    sigma = config.noise * i_wm
    vals = img[brain]
    n1, n2 = (rng.standard_normal(vals.size, dtype=F32) * F32(sigma) for _ in range(2))
    img[brain] = np.sqrt((vals + n1) ** 2 + n2**2) * F32(rng.uniform(0.7, 1.4))
    img[~brain] = 0
    return img


def _band_noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Band-pass white noise (difference of Gaussians, sigma 1 and 4 voxels), unit std."""
    white = rng.standard_normal(shape, dtype=F32)
    band = ndi.gaussian_filter(white, 1.0, truncate=3.0) - ndi.gaussian_filter(white, 4.0,
                                                                               truncate=3.0)
    return band / max(float(band.std()), 1e-6)


def _degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Random Gaussian blur (sigma 0-1.5 voxels) and thick slices along a random axis (1-3x)."""
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.05:
        img = ndi.gaussian_filter(img, sigma, truncate=3.0)
    axis, factor = int(rng.integers(3)), rng.uniform(1.0, 3.0)
    if factor < 1.05:
        return img
    img = ndi.gaussian_filter1d(img, 0.4 * factor, axis=axis, truncate=3.0)
    n = img.shape[axis]
    low = _interp_axis(img, axis, np.arange(0.0, n - 1 + 1e-6, factor))
    return _interp_axis(low, axis, np.minimum(np.arange(n) / factor, low.shape[axis] - 1))


def _interp_axis(a: np.ndarray, axis: int, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``a`` at fractional indices ``pos`` along ``axis``."""
    if a.shape[axis] < 2:
        return np.repeat(a, len(pos), axis=axis)
    i0 = np.clip(np.floor(pos).astype(int), 0, a.shape[axis] - 2)
    shape = [1] * a.ndim
    shape[axis] = -1
    w = (pos - i0).astype(F32).reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i0 + 1, axis=axis) * w
