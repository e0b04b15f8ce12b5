"""Validation during training: loss and per-subject Dice per region, in slice space.

A 2D model sees the subject's slices in batches; a 3D one its stacked slices through the
Gaussian-weighted sliding window of prediction (`brainseg.evaluation.sliding_window`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.data.preprocess import stack_volume
from brainseg.evaluation.metrics import dice
from brainseg.evaluation.sliding_window import sliding_window_logits
from brainseg.models.logits import iter_logits
from brainseg.models.outputs import region_probabilities
from brainseg.training.data import load_subject_inputs

# The history columns `validate` fills (NaN in the epochs that are not validated).
VAL_COLUMNS = ("val_loss", *(f"val_dice_{r}" for r in REGIONS), "val_dice_mean")


@torch.no_grad()
def validate(model: torch.nn.Module, folders: list[Path], loss_fn: torch.nn.Module, output: str,
             batch_size: int, device: str,
             memory: torch.memory_format = torch.channels_last,
             regions: tuple[str, ...] = REGIONS, context_slices: int = 0,
             patch: dict[str, Any] | None = None) -> dict[str, float]:
    """Mean validation loss, and mean over subjects of the 3D Dice (slice space) per region.

    Args:
        regions: the regions the labels annotate; the others' Dice is NaN (not
            available), and "val_dice_mean" is the mean over `regions`.
        context_slices: the model's 2.5D context (`load_subject_inputs`).
        patch: a 3D model's sliding window {size, overlap} (None: a 2D model).

    Returns:
        {"val_loss", "val_dice_WT", "val_dice_TC", "val_dice_ET", "val_dice_mean"}.
    """
    model.eval()
    scores: dict[str, list[float]] = {r: [] for r in REGIONS}
    losses = []
    for folder in folders:
        image, label = load_subject_inputs(folder, context_slices, mmap=False)
        if patch is None:
            loss, probs = _slices(model, image, label, loss_fn, output, batch_size, device, memory)
        else:
            loss, probs = _volume(model, image, label, loss_fn, output, patch, device)
        losses.append(loss)
        predicted = probs > 0.5  # (3, s, h, w)
        reference = labels_to_regions(label)
        for i, region in enumerate(REGIONS):
            scores[region].append(dice(predicted[i], reference[i]) if region in regions
                                  else float("nan"))
    out = {"val_loss": float(np.mean(losses))}
    out.update({f"val_dice_{r}": float(np.mean(v)) for r, v in scores.items()})
    out["val_dice_mean"] = float(np.mean([out[f"val_dice_{r}"] for r in regions]))
    return out


def _slices(model: torch.nn.Module, image: np.ndarray, label: np.ndarray,
            loss_fn: torch.nn.Module, output: str, batch_size: int, device: str,
            memory: torch.memory_format) -> tuple[float, np.ndarray]:
    """Mean loss over the slices and probabilities (3, s, h, w) of a 2D model."""
    probs, loss_sum = [], 0.0
    for start, logits in iter_logits(model, image, batch_size, device, memory):
        y = torch.from_numpy(label[start:start + len(logits)].astype(np.int64)).to(device)
        loss_sum += float(loss_fn(logits, y)) * len(logits)
        probs.append(region_probabilities(logits, output).cpu().numpy())
    return loss_sum / max(len(image), 1), np.concatenate(probs).transpose(1, 0, 2, 3)


def _volume(model: torch.nn.Module, image: np.ndarray, label: np.ndarray,
            loss_fn: torch.nn.Module, output: str, patch: dict[str, Any], device: str
            ) -> tuple[float, np.ndarray]:
    """Loss and probabilities (3, s, h, w) of a 3D model on the stacked slices."""
    logits = sliding_window_logits(model, stack_volume(image), patch["size"], patch["overlap"],
                                   device)[None]
    y = torch.from_numpy(label.astype(np.int64))[None].to(device)
    return float(loss_fn(logits, y)), region_probabilities(logits, output)[0].cpu().numpy()
