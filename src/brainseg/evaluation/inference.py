"""Apply a trained model to a volume: training preprocessing, batched slices, back to the grid."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainseg.data.preprocess import (
    SliceGeometry,
    extract_slices,
    normalize_slices,
    to_original_grid,
)
from brainseg.errors import BrainsegError
from brainseg.evaluation.postprocess import PostprocessSettings, apply
from brainseg.models.outputs import region_probabilities
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


# Slices are (s, c, h, w) with h along the volume's first axis x: left-right in the
# BraTS (LPS) and RAS grids. Flip test-time augmentation mirrors this axis.
FLIP_AXIS = -2


def flip_lr(array: np.ndarray) -> np.ndarray:
    """Mirror slices (s, c, h, w) left-right (along h, the volume's x axis)."""
    return np.flip(array, axis=FLIP_AXIS)


@torch.no_grad()
def _forward(model: torch.nn.Module, slices: np.ndarray, batch_size: int, device: str,
             output: str) -> np.ndarray:
    """Region probabilities float32 (s, 3, h, w), batch by batch."""
    model.eval()
    out = []
    for start in range(0, len(slices), batch_size):
        chunk = np.ascontiguousarray(slices[start : start + batch_size], dtype=np.float32)
        batch = torch.from_numpy(chunk)
        batch = batch.to(device).contiguous(memory_format=torch.channels_last)
        out.append(region_probabilities(model(batch), output).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 3, *slices.shape[2:]), np.float32)


def predict_slices_with_tta(
    model: torch.nn.Module, slices: np.ndarray, batch_size: int, device: str = "cpu",
    output: str = "regions",
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities without and with flip test-time augmentation, from two forward passes.

    Returns:
        (plain, tta), both float32 (s, 3, h, w); tta is the mean of the plain prediction
        and the prediction of the left-right mirrored slices, mirrored back.
    """
    plain = _forward(model, slices, batch_size, device, output)
    mirrored = flip_lr(_forward(model, flip_lr(slices), batch_size, device, output))
    return plain, (plain + mirrored) / np.float32(2)


def predict_slices(
    model: torch.nn.Module, slices: np.ndarray, batch_size: int, device: str = "cpu",
    output: str = "regions", flip_tta: bool = False,
) -> np.ndarray:
    """Probabilities of WT, TC, ET float32 (s, 3, h, w) for normalized slices (s, 4, h, w).

    Args:
        model: the network; its logits are read as `output` (`regions` or `softmax`,
            see `brainseg.models.outputs.region_probabilities`).
        slices: normalized slices (s, 4, h, w).
        batch_size: slices per forward pass.
        device: torch device.
        output: the network's output mode.
        flip_tta: average with the left-right mirrored prediction (twice the compute).
    """
    if flip_tta:
        return predict_slices_with_tta(model, slices, batch_size, device, output)[1]
    return _forward(model, slices, batch_size, device, output)


def prepare_volume(config: dict[str, Any], image: np.ndarray) -> tuple[np.ndarray, SliceGeometry]:
    """Normalized slices (s, 4, h, w) of a volume (4, x, y, z) and their geometry.

    Exactly the preprocessing of the training data (`extract_slices`, `normalize_slices`,
    with the params stored in the checkpoint).
    """
    ext, norm = config["extract"], config["normalize"]
    slices, _, brain, geo = extract_slices(
        image, None, ext["image_size"], ext["margin"], ext["min_brain_pixels"]
    )
    normed, _ = normalize_slices(slices, brain, tuple(norm["clip_percentiles"]))
    return normed, geo


def output_mode(config: dict[str, Any]) -> str:
    """The network's output mode stored in a checkpoint config (`regions` before it existed)."""
    return config["model"].get("output", "regions")


def predict_probabilities(
    model: torch.nn.Module,
    config: dict[str, Any],
    image: np.ndarray,
    batch_size: int,
    device: str = "cpu",
    flip_tta: bool = False,
) -> np.ndarray:
    """Region probabilities float32 (3, x, y, z) of WT, TC, ET for a volume (4, x, y, z).

    On the volume's own grid; 0 outside the brain's crop box and on slices not kept.
    """
    normed, geo = prepare_volume(config, image)
    probs = predict_slices(model, normed, batch_size, device, output_mode(config), flip_tta)
    return to_original_grid(probs, geo)


def predict_volume(
    model: torch.nn.Module,
    config: dict[str, Any],
    image: np.ndarray,
    threshold: float,
    batch_size: int,
    device: str = "cpu",
) -> np.ndarray:
    """Segment one volume (4, x, y, z) into BraTS labels uint8 (x, y, z) on the same grid.

    One `threshold` for every region, ET ⊂ TC ⊂ WT, no other post-processing (see
    `brainseg.evaluation.postprocess` for the tuned settings).
    """
    probs = predict_probabilities(model, config, image, batch_size, device)
    # no volume-based option is on, so the voxel spacing plays no part
    return apply(probs, PostprocessSettings.uniform(threshold), spacing=(1.0, 1.0, 1.0))
