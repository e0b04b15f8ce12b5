"""Sliding-window inference of a 3D network, Gaussian-weighted, with optional mirror TTA.

As nnU-Net and MONAI's `sliding_window_inference`: windows of the training patch size tile
the volume with `overlap` (0.5: each window shares half its extent with its neighbour
along every axis; the last window of an axis ends at the volume's end), and each window's
logits are weighted by a Gaussian centred on the window (sigma = 1/8 of its size, nnU-Net's
default) before they are summed and divided by the summed weights, so window borders, where
a network sees least context, count least. A volume smaller than a window is zero-padded at
the end of each short axis and the output cropped back. Mirror test-time augmentation
averages the probabilities of the 8 combinations of flips along the three axes.

Volumes are (c, d, h, w) float32: the stacked slices of `brainseg.data.preprocess.stack_volume`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.nn import functional

from brainseg.errors import BrainsegError
from brainseg.models.outputs import region_probabilities

SIGMA_SCALE = 1.0 / 8  # nnU-Net's Gaussian sigma, as a share of the window size


def gaussian_weights(size: Sequence[int], sigma_scale: float = SIGMA_SCALE) -> np.ndarray:
    """Importance weights float32 of one window: a separable Gaussian centred on it, peak 1.

    Symmetric under a mirror of every axis (centred at (n - 1) / 2) and positive everywhere
    (clamped below to 1e-3 of the peak, so that a voxel seen only by window corners still
    gets a well-defined blend).
    """
    axes = []
    for n in size:
        x = np.arange(n, dtype=np.float64) - (n - 1) / 2
        sigma = max(n * sigma_scale, 1e-6)
        axes.append(np.exp(-0.5 * (x / sigma) ** 2))
    weights = axes[0]
    for ax in axes[1:]:
        weights = np.multiply.outer(weights, ax)
    weights = weights / weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)


def window_starts(length: int, window: int, overlap: float) -> list[int]:
    """First index of each window along one axis: evenly spread from 0 to length - window,
    with steps of at most window * (1 - overlap); [0] when the axis is no longer than a window.

    Raises:
        BrainsegError: overlap outside [0, 1).
    """
    if not 0 <= overlap < 1:
        raise BrainsegError(f"sliding window: overlap {overlap} should be in [0, 1)")
    if length <= window:
        return [0]
    step = window * (1 - overlap)
    n = math.ceil((length - window) / step) + 1
    return sorted({round(i * (length - window) / (n - 1)) for i in range(n)})


def windows(shape: Sequence[int], size: Sequence[int], overlap: float
            ) -> Iterator[tuple[slice, ...]]:
    """The spatial slices of every window tiling a volume of `shape` (already >= `size`)."""
    starts = [window_starts(n, p, overlap) for n, p in zip(shape, size, strict=True)]
    for corner in itertools.product(*starts):
        yield tuple(slice(s, s + p) for s, p in zip(corner, size, strict=True))


# Windows per forward pass. Two, not one: on a CPU torch runs a batch of one small 3D input
# through its slow (im2col) convolution instead of oneDNN's, twice the time per window.
WINDOWS_PER_PASS = 2


@torch.no_grad()
def sliding_window_logits(model: torch.nn.Module, volume: np.ndarray, size: Sequence[int],
                          overlap: float, device: str = "cpu",
                          windows_per_pass: int = WINDOWS_PER_PASS) -> torch.Tensor:
    """Gaussian-blended logits float32 (k, d, h, w) of `model` over a volume (c, d, h, w).

    Args:
        model: a network in eval mode, (n, c, *size) -> (n, k, *size) logits.
        volume: (c, d, h, w) float32.
        size: the window (d, h, w), the training patch size.
        overlap: share of a window its neighbour overlaps, in [0, 1).
        device: torch device of the forward passes (the blending runs there too).
        windows_per_pass: windows stacked into one forward pass (speed and memory only).
    """
    if volume.ndim != 4 or len(size) != 3:
        raise BrainsegError(f"sliding window: expected a volume (c, d, h, w) and a 3D window, "
                            f"got shapes {volume.shape} and {tuple(size)}")
    shape = volume.shape[1:]
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32)).to(device)
    pads = [max(p - n, 0) for n, p in zip(shape, size, strict=True)]
    if any(pads):  # F.pad lists the last axis first
        x = functional.pad(x, tuple(v for p in reversed(pads) for v in (0, p)))
    weights = torch.from_numpy(gaussian_weights(size)).to(device)
    total = torch.zeros(x.shape[1:], device=device)
    out: torch.Tensor | None = None
    boxes = list(windows(x.shape[1:], size, overlap))
    for first in range(0, len(boxes), windows_per_pass):
        chunk = boxes[first:first + windows_per_pass]
        batch = torch.stack([x[(slice(None), *box)] for box in chunk])
        logits = model(batch).float()
        if out is None:
            out = torch.zeros((logits.shape[1], *x.shape[1:]), device=device)
        for box, window in zip(chunk, logits, strict=True):
            out[(slice(None), *box)] += window * weights
            total[box] += weights
    assert out is not None  # at least one window
    out /= total
    return out[(slice(None), *(slice(0, n) for n in shape))]


MIRRORS: tuple[tuple[int, ...], ...] = tuple(
    axes for r in range(4) for axes in itertools.combinations((1, 2, 3), r))


def predict_volume_tta(model: torch.nn.Module, volume: np.ndarray, size: Sequence[int],
                       overlap: float, output: str, device: str = "cpu"
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities without and with mirror test-time augmentation (8 sliding windows).

    Returns:
        (plain, tta), float32 (3, d, h, w) of WT, TC, ET; tta is the mean of the
        probabilities of the 8 mirrored volumes (flips along any subset of d, h, w), each
        mirrored back.
    """
    plain = None
    acc = None
    for axes in MIRRORS:
        flipped = np.flip(volume, axes) if axes else volume
        logits = sliding_window_logits(model, flipped, size, overlap, device)
        probs = region_probabilities(logits[None], output)[0]
        probs = torch.flip(probs, [a for a in axes]) if axes else probs
        if plain is None:
            plain = probs.cpu().numpy()
        acc = probs if acc is None else acc + probs
    assert plain is not None and acc is not None
    return plain, (acc / len(MIRRORS)).cpu().numpy()


def predict_volume_probabilities(model: torch.nn.Module, volume: np.ndarray,
                                 size: Sequence[int], overlap: float, output: str,
                                 device: str = "cpu", mirror_tta: bool = False) -> np.ndarray:
    """Region probabilities float32 (3, d, h, w) of WT, TC, ET for a volume (c, d, h, w).

    Args:
        model: the 3D network in eval mode; its logits are read as `output`.
        volume: normalized (c, d, h, w), `stack_volume`.
        size: the window (d, h, w).
        overlap: share of a window its neighbour overlaps.
        output: `regions` or `softmax` (`brainseg.models.outputs.region_probabilities`).
        device: torch device.
        mirror_tta: average over the 8 mirrors (8 times the compute).
    """
    if mirror_tta:
        return predict_volume_tta(model, volume, size, overlap, output, device)[1]
    logits = sliding_window_logits(model, volume, size, overlap, device)
    return region_probabilities(logits[None], output)[0].cpu().numpy()
