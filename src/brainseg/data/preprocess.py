"""The one preprocessing used for training, evaluation and prediction.

A volume (m, x, y, z) of m modalities becomes a stack of axial slices (s, m, h, w): the brain's
in-plane bounding box (plus a margin) is made square, cropped (zero-padded where it
leaves the volume) and resized to `image_size`; only slices holding brain are kept.
`to_original_grid` is the exact inverse mapping for predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from brainseg.data.boxes import bounding_box
from brainseg.errors import BrainsegError


@dataclass(frozen=True)
class SliceGeometry:
    """Where the slices came from in the original grid.

    Attributes:
        shape: original volume shape (x, y, z).
        x0, y0: corner of the square in-plane box (may be negative: zero padding).
        side: side of the square box in voxels.
        z: indices of the kept axial slices, ascending.
        image_size: side of the resized slices.
    """

    shape: tuple[int, int, int]
    x0: int
    y0: int
    side: int
    z: tuple[int, ...]
    image_size: int

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape), "z": list(self.z)}

    @classmethod
    def from_dict(cls, d: dict) -> SliceGeometry:
        return cls(
            shape=tuple(d["shape"]),
            x0=int(d["x0"]),
            y0=int(d["y0"]),
            side=int(d["side"]),
            z=tuple(d["z"]),
            image_size=int(d["image_size"]),
        )


def brain_mask(image: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Bool (x, y, z): voxels that are non-zero in any modality of `image` (m, x, y, z)."""
    mask = image[0] != 0
    for channel in image[1:]:
        mask |= channel != 0
    return mask


def slice_geometry(
    mask: np.ndarray, image_size: int, margin: int, min_brain_pixels: int
) -> SliceGeometry:
    """Compute the square crop box and the kept slices from a brain mask (x, y, z)."""
    per_slice = np.count_nonzero(mask, axis=(0, 1))
    z = tuple(int(i) for i in np.flatnonzero(per_slice >= min_brain_pixels))
    if not z:
        raise BrainsegError(f"no axial slice holds {min_brain_pixels} brain voxels")
    box = bounding_box(mask)
    if box is None:
        raise BrainsegError("the volume holds no brain voxel (every modality is 0)")
    bx, by, _ = box
    side = max(bx.stop - bx.start, by.stop - by.start) + 2 * margin
    cx, cy = (bx.start + bx.stop) // 2, (by.start + by.stop) // 2
    return SliceGeometry(
        shape=tuple(int(s) for s in mask.shape),
        x0=int(cx - side // 2),
        y0=int(cy - side // 2),
        side=side,
        z=z,
        image_size=image_size,
    )


def _box(geo: SliceGeometry) -> tuple[slice, slice, slice, slice]:
    """The crop box's part inside the volume (sx, sy) and where it lies in the box (dx, dy)."""
    sx = slice(max(geo.x0, 0), min(geo.x0 + geo.side, geo.shape[0]))
    sy = slice(max(geo.y0, 0), min(geo.y0 + geo.side, geo.shape[1]))
    dx = slice(sx.start - geo.x0, sx.stop - geo.x0)
    dy = slice(sy.start - geo.y0, sy.stop - geo.y0)
    return sx, sy, dx, dy


def _resize_planes(volume: np.ndarray, geo: SliceGeometry, interpolation: int,
                   out: np.ndarray, dtype: type = np.float32) -> None:
    """Crop each kept axial plane of `volume` (x, y, z) to the box and resize it into `out[k]`.

    One (side, side) buffer is reused: its part outside the volume stays zero (the
    padding), the rest is overwritten plane by plane. No cropped copy of the whole volume
    is made, and an axial plane of a Fortran-ordered volume is read as one block.
    """
    sx, sy, dx, dy = _box(geo)
    plane = np.zeros((geo.side, geo.side), dtype=dtype)
    size = (geo.image_size, geo.image_size)
    for k, z in enumerate(geo.z):
        plane[dx, dy] = volume[sx, sy, z]
        out[k] = cv2.resize(plane, size, interpolation=interpolation)


def extract_slices(
    image: np.ndarray | Sequence[np.ndarray],
    seg: np.ndarray | None,
    image_size: int,
    margin: int,
    min_brain_pixels: int,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, SliceGeometry]:
    """Crop to the brain and resize the axial slices.

    Args:
        image: float32 (m, x, y, z), or the m (x, y, z) volumes in any real dtype
            (each axial plane is cast to float32 as it is cropped: same values).
        seg: uint8 (x, y, z) BraTS labels, or None.
        image_size: output side h = w.
        margin: voxels added around the brain's in-plane bounding box.
        min_brain_pixels: a slice is kept when it holds at least this many brain voxels.

    Returns:
        slices float32 (s, m, h, w), labels uint8 (s, h, w) or None,
        brain mask bool (s, h, w), and the geometry to map predictions back.
    """
    mask = brain_mask(image)
    geo = slice_geometry(mask, image_size, margin, min_brain_pixels)
    n = len(geo.z)
    slices = np.empty((n, len(image), image_size, image_size), dtype=np.float32)
    for c in range(len(image)):
        _resize_planes(image[c], geo, cv2.INTER_AREA, slices[:, c])
    brain = np.empty((n, image_size, image_size), dtype=np.uint8)
    _resize_planes(mask, geo, cv2.INTER_NEAREST_EXACT, brain, np.uint8)
    labels = None
    if seg is not None:
        labels = np.empty((n, image_size, image_size), dtype=np.uint8)
        _resize_planes(seg, geo, cv2.INTER_NEAREST_EXACT, labels, np.uint8)
    return slices, labels, brain.astype(bool), geo


def normalize_slices(
    slices: np.ndarray, brain: np.ndarray, clip_percentiles: tuple[float, float]
) -> tuple[np.ndarray, dict[str, list[float]]]:
    """Z-score each modality inside the brain after percentile clipping.

    Args:
        slices: float32 (s, c, h, w) raw intensities.
        brain: bool (s, h, w) brain mask; voxels outside are set to 0.
        clip_percentiles: (low, high) percentiles of the brain voxels, per modality.

    Returns:
        float16 (s, c, h, w) normalized slices (float16: the storage and inference
        precision, so training and prediction see the same values), and the statistics.
    """
    lo_p, hi_p = clip_percentiles
    out = np.zeros(slices.shape, dtype=np.float16)
    stats: dict[str, list[float]] = {"low": [], "high": [], "mean": [], "std": []}
    for c in range(slices.shape[1]):
        channel = slices[:, c]
        values = channel[brain]
        if values.size == 0:
            raise BrainsegError("empty brain mask: nothing to normalize")
        low, high = np.percentile(values, [lo_p, hi_p])
        clipped = np.clip(values, low, high)
        mean, std = float(clipped.mean()), float(clipped.std())
        std = std if std > 1e-6 else 1.0
        out[:, c][brain] = ((clipped - mean) / std).astype(np.float16)  # outside: stays 0
        for key, val in zip(("low", "high", "mean", "std"), (low, high, mean, std), strict=True):
            stats[key].append(float(val))
    return out, stats


def to_original_grid(probs: np.ndarray, geo: SliceGeometry) -> np.ndarray:
    """Map per-slice outputs (s, c, h, w) back to the original grid (c, x, y, z).

    Each slice is resized to the crop box (bilinear), un-padded and put at its z;
    slices that were not kept are 0.
    """
    c = probs.shape[1]
    out = np.zeros((c, *geo.shape), dtype=np.float32)
    sx, sy, dx, dy = _box(geo)
    for k, z in enumerate(geo.z):
        for ch in range(c):
            plane = cv2.resize(probs[k, ch].astype(np.float32), (geo.side, geo.side),
                               interpolation=cv2.INTER_LINEAR)
            out[ch, sx, sy, z] = plane[dx, dy]
    return out


def context_indices(z: Sequence[int], n: int) -> np.ndarray:
    """Stack indices int64 (s, 2n + 1) of the neighbours of each kept slice, for 2.5D input.

    Row k holds, for the offsets -n..n in order, the index into the slice stack of the
    slice at volume position z[k] + offset. Edge replication: beyond the first or last
    kept slice the nearest kept one is repeated. A gap in `z` (a slice not kept between
    two kept ones) is an edge too, so every neighbour is a true neighbour in the volume
    or a repeat of the slice nearest to it on the target's side.

    Args:
        z: the kept slices' axial positions, ascending (`SliceGeometry.z`).
        n: context slices on each side (0: each slice alone).
    """
    z = np.asarray(z, dtype=np.int64)
    k = np.arange(len(z))
    run = np.concatenate([[0], np.cumsum(np.diff(z) != 1)]) if len(z) else k
    first = np.searchsorted(run, run, side="left")  # first and last stack index of each run
    last = np.searchsorted(run, run, side="right") - 1
    offsets = np.arange(-n, n + 1)
    return np.clip(k[:, None] + offsets[None, :], first[:, None], last[:, None])


def stack_context(slices: np.ndarray, n: int, z: Sequence[int] | None = None,
                  index: int | None = None) -> np.ndarray:
    """The 2.5D input of slices (s, m, h, w): each modality at the n neighbours each side.

    The one stacking of context slices, used by training, validation and every prediction.
    Channel order is modality-major: channel c * (2n + 1) + (n + d) is modality c at
    offset d in -n..n (n = 1: t1[z-1], t1[z], t1[z+1], t1ce[z-1], ...). n = 0 returns
    `slices` itself (or `slices[index]`), unchanged.

    Args:
        slices: a subject's stack (s, m, h, w), in memory or memory-mapped.
        n: context slices on each side (`train.model.context_slices`).
        z: the axial position of each slice (`SliceGeometry.z`); None: 0..s-1 (contiguous).
            Neighbours follow `context_indices`.
        index: one slice only: returns its (m * (2n + 1), h, w) input, reading only the
            2n + 1 slices it needs.

    Returns:
        (s, m * (2n + 1), h, w), or (m * (2n + 1), h, w) for `index`, of `slices`' dtype.

    Raises:
        BrainsegError: z does not give one position per slice.
    """
    if z is None:
        z = range(len(slices))
    if len(z) != len(slices):
        raise BrainsegError(f"{len(z)} slice positions for {len(slices)} slices")
    if n == 0:
        return slices if index is None else slices[index]
    idx = context_indices(z, n)
    if index is not None:
        picked = np.asarray(slices[idx[index]])  # (2n + 1, m, h, w)
        return picked.transpose(1, 0, 2, 3).reshape(-1, *picked.shape[2:])
    s, m, h, w = slices.shape
    out = np.empty((s, m, 2 * n + 1, h, w), dtype=slices.dtype)
    for j in range(2 * n + 1):
        out[:, :, j] = slices[idx[:, j]]
    return out.reshape(s, m * (2 * n + 1), h, w)


def stack_volume(slices: np.ndarray) -> np.ndarray:
    """The 3D input of a subject: its normalized slices (s, m, h, w) as one volume (m, s, h, w).

    The one stacking of a 3D U-Net's input, used by training, validation and every prediction:
    the kept axial slices (`SliceGeometry.z`) in order, each already cropped, resized and
    normalized by `extract_slices` and `normalize_slices` (no second preprocessing). Slices
    that hold too little brain to be kept are not in the stack, so the volume's first axis is
    the kept slices; a prediction (s, ...) on it maps back with `to_original_grid`.

    Args:
        slices: (s, m, h, w), in memory or memory-mapped.

    Returns:
        (m, s, h, w) float32, C-contiguous.
    """
    if slices.ndim != 4:
        raise BrainsegError(f"expected slices (s, m, h, w), got shape {slices.shape}")
    return np.ascontiguousarray(np.asarray(slices).transpose(1, 0, 2, 3), dtype=np.float32)
