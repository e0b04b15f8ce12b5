"""Apply a trained model to a volume: training preprocessing, batched slices, back to the grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainseg.data.labels import regions_to_labels
from brainseg.data.preprocess import extract_slices, normalize_slices, to_original_grid
from brainseg.errors import BrainsegError
from brainseg.models.unet import UNet, build_model


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[UNet, dict[str, Any]]:
    """Rebuild the model from a checkpoint written by `train` (loaded with weights_only=True).

    Returns:
        The model in eval mode on `device`, and the checkpoint's config.
    """
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except (OSError, RuntimeError, EOFError) as exc:
        raise BrainsegError(f"{path}: cannot load checkpoint: {exc}") from exc
    model = build_model(ckpt["config"]["model"])
    model.load_state_dict(ckpt["state_dict"])
    model.to(device=device, memory_format=torch.channels_last).eval()
    return model, ckpt["config"]


@torch.no_grad()
def predict_slices(
    model: torch.nn.Module, slices: np.ndarray, batch_size: int, device: str = "cpu"
) -> np.ndarray:
    """Sigmoid probabilities float32 (s, 3, h, w) for normalized slices (s, 4, h, w)."""
    model.eval()
    out = []
    for start in range(0, len(slices), batch_size):
        batch = torch.from_numpy(np.asarray(slices[start : start + batch_size], dtype=np.float32))
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        out.append(torch.sigmoid(model(batch)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3, *slices.shape[2:]), np.float32)


def predict_volume(
    model: torch.nn.Module,
    config: dict[str, Any],
    image: np.ndarray,
    threshold: float,
    batch_size: int,
    device: str = "cpu",
) -> np.ndarray:
    """Segment one volume (4, x, y, z) into BraTS labels uint8 (x, y, z) on the same grid.

    Uses exactly the preprocessing of the training data (`extract_slices`,
    `normalize_slices`, with the params stored in the checkpoint).
    """
    ext, norm = config["extract"], config["normalize"]
    slices, _, brain, geo = extract_slices(
        image, None, ext["image_size"], ext["margin"], ext["min_brain_pixels"]
    )
    normed, _ = normalize_slices(slices, brain, tuple(norm["clip_percentiles"]))
    probs = predict_slices(model, normed, batch_size, device)
    grid = to_original_grid(probs, geo)
    return regions_to_labels(grid > threshold)
