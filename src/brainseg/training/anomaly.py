"""Training of the anomaly autoencoder on tumour-free brain, from the slice store.

A subject's stored slices (s, m, h, w), in axial order, are its volume (m, z, h, w) in the
store's grid: the one preprocessing of `extract` and `normalize`, no other. The brain is
where any modality is non-zero (`brain_mask`: `normalize` leaves exactly 0 outside it).
The training loss of a subject is the reconstruction error inside the brain minus its
whole tumour dilated by `anomaly.tumour_margin` voxels; a tumour-free synthetic subject
counts all of its brain.

Patches of `anomaly.patch_size` are centred on random voxels of those masks (clipped to
the volume). The patches of an epoch depend only on (seed, epoch), and torch is seeded
from `base.seed`: two CPU runs with the same thread count give the same weights.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from tqdm.auto import tqdm

from brainseg.data.labels import region_mask
from brainseg.data.preprocess import brain_mask
from brainseg.errors import BrainsegError
from brainseg.models.autoencoder import Autoencoder3d, build_autoencoder
from brainseg.runtime import seed_everything
from brainseg.training.data import load_subject_slices

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Volume:
    """One subject in the store's grid.

    Attributes:
        name: subject id.
        image: float32 (m, z, h, w) z-scores of the chosen modalities.
        brain: bool (z, h, w).
        tumour: bool (z, h, w) whole tumour (labels > 0).
    """

    name: str
    image: np.ndarray
    brain: np.ndarray
    tumour: np.ndarray


def channel_indices(available: tuple[str, ...] | list[str], wanted: list[str],
                    source: str) -> list[int]:
    """Indices into `available` of the `wanted` modalities ([]: all of them, in order).

    Raises:
        BrainsegError: naming `source` and the modalities it lacks.
    """
    if not wanted:
        return list(range(len(available)))
    missing = [m for m in wanted if m not in available]
    if missing:
        raise BrainsegError(f"{source}: anomaly.modalities {' '.join(missing)} not among its "
                            f"modalities {' '.join(available)}")
    return [list(available).index(m) for m in wanted]


def as_volume(name: str, image: np.ndarray, labels: np.ndarray, channels: list[int]) -> Volume:
    """A `Volume` from store arrays: image (s, m, h, w), labels uint8 (s, h, w)."""
    volume = np.asarray(image, dtype=np.float32).transpose(1, 0, 2, 3)
    return Volume(name, np.ascontiguousarray(volume[channels]), brain_mask(volume),
                  region_mask(np.asarray(labels), "WT"))


def store_volume(folder: Path, channels: list[int]) -> Volume:
    """The `Volume` of the subject stored in `folder` (data/slices/<subject>)."""
    image, labels = load_subject_slices(folder, mmap=False)
    return as_volume(folder.name, image, labels, channels)


def training_mask(volume: Volume, margin: int) -> np.ndarray:
    """Bool (z, h, w): the brain minus the whole tumour dilated by `margin` voxels."""
    if not volume.tumour.any():
        return volume.brain.copy()
    grown = ndi.binary_dilation(volume.tumour, iterations=margin) if margin else volume.tumour
    return volume.brain & ~grown


def masked_mse(recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the voxels of `mask` (n, 1, z, h, w) and every channel.

    Voxels outside the mask do not change the loss nor its gradient; an empty mask gives 0.
    """
    weight = mask.to(recon.dtype)
    total = (((recon - target) ** 2) * weight).sum()
    return total / (weight.sum() * recon.shape[1]).clamp_min(1.0)


def padded(array: np.ndarray, patch: tuple[int, int, int]) -> np.ndarray:
    """`array` (..., z, h, w) zero-padded at the end of each axis to at least `patch`."""
    extra = [(0, max(0, p - s)) for s, p in zip(array.shape[-3:], patch, strict=True)]
    return np.pad(array, [(0, 0)] * (array.ndim - 3) + extra) if any(e for _, e in extra) \
        else array


def patch_corners(masks: list[np.ndarray], patch: tuple[int, int, int], n: int,
                  rng: np.random.Generator) -> list[tuple[int, int, int, int]]:
    """`n` (volume, z0, y0, x0) corners: a volume at random, a patch centred on one of its
    mask voxels at random, moved inside the volume (each mask at least `patch` in size)."""
    usable = [k for k, m in enumerate(masks) if m.any()]
    if not usable:
        raise BrainsegError("anomaly: no training voxel (every volume's brain lies inside "
                            "its dilated tumour)")
    corners = []
    for k in rng.choice(usable, size=n):
        mask = masks[k]
        flat = np.flatnonzero(mask)
        centre = np.unravel_index(flat[rng.integers(len(flat))], mask.shape)
        corner = [int(min(max(c - p // 2, 0), s - p))
                  for c, p, s in zip(centre, patch, mask.shape, strict=True)]
        corners.append((int(k), *corner))
    return corners


def _batch(volumes: list[np.ndarray], masks: list[np.ndarray], corners, patch
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (n, m, *patch) and mask (n, 1, *patch) tensors of the corners' patches."""
    images, weights = [], []
    for k, z, y, x in corners:
        box = (slice(z, z + patch[0]), slice(y, y + patch[1]), slice(x, x + patch[2]))
        images.append(volumes[k][(slice(None), *box)])
        weights.append(masks[k][box][None])
    return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(weights))


def autoencoder_config(cfg: dict[str, Any], in_channels: int) -> dict[str, Any]:
    """What `build_autoencoder` needs: the `anomaly` sizes (width, levels, latent channels)
    and the input channels."""
    return {"in_channels": in_channels, "base_channels": cfg["width"], "depth": cfg["levels"],
            "latent_channels": cfg["latent_channels"]}


def train_autoencoder(volumes: list[Volume], masks: list[np.ndarray], cfg: dict[str, Any],
                      seed: int, device: str = "cpu", desc: str = "anomaly"
                      ) -> tuple[Autoencoder3d, list[dict[str, float]]]:
    """Train an autoencoder on the masked reconstruction error of random patches.

    Args:
        volumes: the training subjects (all with the same m channels).
        masks: bool (z, h, w) per volume: the voxels the loss counts (`training_mask`).
        cfg: the `anomaly` params.
        seed: `base.seed`: weights and patches.
        device: torch device.
        desc: progress-bar label.

    Returns:
        The model (eval mode, on the CPU) and one {epoch, loss} row per epoch.
    """
    patch = tuple(cfg["patch_size"])
    images = [padded(v.image, patch) for v in volumes]
    weights = [padded(m, patch) for m in masks]
    seed_everything(seed)
    model = build_autoencoder(autoencoder_config(cfg, volumes[0].image.shape[0])).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg["learning_rate"])
    steps = -(-cfg["patches_per_epoch"] // cfg["patch_batch"])
    history = []
    for epoch in range(1, cfg["training_epochs"] + 1):
        rng = np.random.default_rng([seed, epoch])
        corners = patch_corners(weights, patch, steps * cfg["patch_batch"], rng)
        model.train()
        total = 0.0
        for step in tqdm(range(steps), desc=f"{desc} epoch {epoch}", unit="batch", leave=False):
            chunk = corners[step * cfg["patch_batch"]:(step + 1) * cfg["patch_batch"]]
            x, m = (t.to(device) for t in _batch(images, weights, chunk, patch))
            loss = masked_mse(model(x), x, m)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item()
        history.append({"epoch": epoch, "loss": total / steps})
        log.info("%s epoch %d/%d: masked reconstruction loss %.4f", desc, epoch,
                 cfg["training_epochs"], total / steps)
    return model.cpu().eval(), history
