"""Intensity and texture statistics of normalized MRI slices, one tissue mask at a time.

Pure numpy / scipy.ndimage functions on the arrays the pipeline trains on: slices
(s, h, w) of one modality after `brainseg.data.preprocess.normalize_slices`, and bool
masks (s, h, w) of a tissue. Texture is measured in the axial plane, as the 2D network
sees it. An empty mask gives NaN (no value), never an error.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: The quantiles (in %) of a tissue's intensity distribution.
QUANTILES = (5, 25, 50, 75, 95)
#: Side of the in-plane window of the local variance (voxels).
WINDOW = 3


def intensity_summary(values: np.ndarray) -> dict[str, float]:
    """Quantiles 5/25/50/75/95, mean and standard deviation of a tissue's intensities.

    Args:
        values: (n,) intensities of the tissue's voxels, any real dtype.

    Returns:
        {"q05", "q25", "q50", "q75", "q95", "mean", "std"} as floats; all NaN when n = 0.
    """
    names = [f"q{q:02d}" for q in QUANTILES] + ["mean", "std"]
    if values.size == 0:
        return dict.fromkeys(names, float("nan"))
    x = values.astype(np.float64, copy=False)
    found = [*np.percentile(x, QUANTILES), x.mean(), x.std()]
    return {name: float(v) for name, v in zip(names, found, strict=True)}


def _in_plane(size: int) -> tuple[int, int, int]:
    return (1, size, size)


def inner_mask(mask: np.ndarray, size: int = WINDOW) -> np.ndarray:
    """Bool (s, h, w): the voxels of `mask` whose whole in-plane window lies in `mask`."""
    return ndi.binary_erosion(mask, structure=np.ones(_in_plane(size), bool))


def local_variance(image: np.ndarray, mask: np.ndarray, size: int = WINDOW) -> float:
    """Mean in-plane local variance of `image` (s, h, w) over the voxels of `mask` (s, h, w)
    whose `size` x `size` window lies wholly inside the mask (so the tissue's border with
    another tissue adds nothing). 0 for a constant image; NaN when no such voxel exists.
    """
    inner = inner_mask(mask, size)
    if not inner.any():
        return float("nan")
    x = image.astype(np.float64)
    mean = ndi.uniform_filter(x, _in_plane(size), mode="nearest")
    square = ndi.uniform_filter(x * x, _in_plane(size), mode="nearest")
    return float(np.clip(square - mean * mean, 0.0, None)[inner].mean())


def gradient_magnitude(image: np.ndarray, mask: np.ndarray) -> float:
    """Mean in-plane gradient magnitude (intensity units per pixel, central differences) of
    `image` (s, h, w) over the voxels of `mask` whose 3 x 3 neighbourhood is in the mask."""
    inner = inner_mask(mask, 3)
    if not inner.any():
        return float("nan")
    x = image.astype(np.float64)
    gy, gx = np.gradient(x, axis=(1, 2))
    return float(np.hypot(gx, gy)[inner].mean())


def radial_power_spectrum(slices: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum (n // 2,) of square slices (s, n, n), mean over s.

    Entry k is the mean |FFT|² over the frequencies of radius in [k - 0.5, k + 0.5)
    cycles per slice (k = 0: the mean intensity).
    """
    n = slices.shape[-1]
    power = np.abs(np.fft.fft2(slices.astype(np.float64))) ** 2
    power = power.mean(axis=0)
    f = np.fft.fftfreq(n) * n
    radius = np.rint(np.hypot(f[:, None], f[None, :])).astype(int)
    keep = radius < n // 2
    total = np.bincount(radius[keep], weights=power[keep], minlength=n // 2)
    count = np.bincount(radius[keep], minlength=n // 2)
    return total / np.maximum(count, 1)


def spectrum_slope(slices: np.ndarray, band: tuple[float, float] = (1 / 32, 1 / 4)) -> float:
    """Slope of log power against log frequency of slices (s, n, n), fitted by least squares
    over radii band[0] * n to band[1] * n cycles per slice (white noise: 0; natural images:
    about -2; smoother: steeper). NaN without slices.
    """
    if len(slices) == 0:
        return float("nan")
    n = slices.shape[-1]
    power = radial_power_spectrum(slices)
    k = np.arange(max(1, round(band[0] * n)), round(band[1] * n) + 1)
    k = k[power[k] > 0]
    if len(k) < 2:
        return float("nan")
    return float(np.polyfit(np.log(k), np.log(power[k]), 1)[0])


def texture_summary(image: np.ndarray, tissue: np.ndarray, brain: np.ndarray,
                    min_brain_fraction: float = 0.25) -> dict[str, float]:
    """Texture of one modality's slices (s, h, w) with h = w.

    Args:
        image: normalized intensities (s, h, w).
        tissue: bool (s, h, w), where the local variance and the gradient are averaged.
        brain: bool (s, h, w); the power spectrum is taken over the slices whose brain
            covers at least `min_brain_fraction` of the slice.

    Returns:
        {"local_var", "gradient", "spectrum_slope"}.
    """
    full = brain.mean(axis=(1, 2)) >= min_brain_fraction
    return {"local_var": local_variance(image, tissue),
            "gradient": gradient_magnitude(image, tissue),
            "spectrum_slope": spectrum_slope(image[full])}
