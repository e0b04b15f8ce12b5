"""A network over a stack of slices, batch by batch: logits, region probabilities, flip TTA.

The one loop that feeds slices (s, 4, h, w) to a model `batch_size` at a time, shared by
validation during training (`iter_logits`) and by every prediction (`predict_slices`).
The model is a torch module or an `ArrayNetwork` (a 2D ONNX model): torch is imported only
for a torch module.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Union

import numpy as np

from brainseg.models.arrays import ArrayNetwork, array_probabilities, iter_batches

if TYPE_CHECKING:
    import torch

Network = Union["torch.nn.Module", ArrayNetwork]  # what the prediction loops accept

# Slices are (s, c, h, w) with h along the volume's first axis x: left-right in the
# BraTS (LPS) and RAS grids. Flip test-time augmentation mirrors this axis.
FLIP_AXIS = -2


def flip_lr(array: np.ndarray) -> np.ndarray:
    """Mirror slices (s, c, h, w) left-right (along h, the volume's x axis)."""
    return np.flip(array, axis=FLIP_AXIS)


def iter_logits(model: torch.nn.Module, slices: np.ndarray, batch_size: int, device: str,
                memory: torch.memory_format | None = None,
                ) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (start index, float32 logits) of slices (s, 4, h, w), `batch_size` at a time,
    in `memory` format (None: channels last).

    Call under `torch.no_grad()` with the model in eval mode.
    """
    import torch

    memory = torch.channels_last if memory is None else memory
    for start, chunk in iter_batches(slices, batch_size):
        batch = torch.from_numpy(chunk).to(device).contiguous(memory_format=memory)
        yield start, model(batch).float()


def forward_probabilities(model: Network, slices: np.ndarray, batch_size: int,
                          device: str, output: str) -> np.ndarray:
    """Region probabilities float32 (s, 3, h, w), batch by batch (an `ArrayNetwork` on the
    CPU whatever `device`)."""
    if isinstance(model, ArrayNetwork):
        return array_probabilities(model, slices, batch_size, output)
    import torch

    from brainseg.models.outputs import region_probabilities

    model.eval()
    with torch.no_grad():
        out = [region_probabilities(logits, output).cpu().numpy()
               for _, logits in iter_logits(model, slices, batch_size, device)]
    return np.concatenate(out) if out else np.zeros((0, 3, *slices.shape[2:]), np.float32)


def predict_slices_with_tta(
    model: Network, slices: np.ndarray, batch_size: int, device: str = "cpu",
    output: str = "regions",
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities without and with flip test-time augmentation, from two forward passes.

    Returns:
        (plain, tta), both float32 (s, 3, h, w); tta is the mean of the plain prediction
        and the prediction of the left-right mirrored slices, mirrored back.
    """
    plain = forward_probabilities(model, slices, batch_size, device, output)
    mirrored = flip_lr(forward_probabilities(model, flip_lr(slices), batch_size, device, output))
    return plain, (plain + mirrored) / np.float32(2)


def predict_slices(
    model: Network, slices: np.ndarray, batch_size: int, device: str = "cpu",
    output: str = "regions", flip_tta: bool = False,
) -> np.ndarray:
    """Probabilities of WT, TC, ET float32 (s, 3, h, w) for normalized slices (s, 4, h, w).

    Args:
        model: the network (a torch module or an `ArrayNetwork`); its logits are read as
            `output` (`regions` or `softmax`, see
            `brainseg.models.outputs.region_probabilities`).
        slices: normalized slices (s, 4, h, w).
        batch_size: slices per forward pass.
        device: torch device.
        output: the network's output mode.
        flip_tta: average with the left-right mirrored prediction (twice the compute).
    """
    if flip_tta:
        return predict_slices_with_tta(model, slices, batch_size, device, output)[1]
    return forward_probabilities(model, slices, batch_size, device, output)
