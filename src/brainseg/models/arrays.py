"""Networks called on NumPy arrays, without torch: what a 2D ONNX model needs to predict.

An `ArrayNetwork` maps float32 slices (n, c, h, w) to float32 logits (n, k, h, w), as the
torch network it was exported from does. `brainseg.models.logits` feeds it the same
batches as a torch module and turns its logits into region probabilities here
(`region_probabilities_array`, the NumPy twin of `outputs.region_probabilities`), so a
prediction with an ONNX model never imports torch (about 1.2 s of a fresh command here).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

import numpy as np

from brainseg.errors import BrainsegError
from brainseg.models.outputs import OUTPUTS


class ArrayNetwork(ABC):
    """A network on NumPy arrays, already in eval mode: `train()`/`eval()` do nothing."""

    @abstractmethod
    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """float32 logits (n, k, ...) of a float32 C-contiguous batch (n, c, ...)."""

    def eval(self) -> ArrayNetwork:
        return self

    def train(self, mode: bool = True) -> ArrayNetwork:
        return self


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Logistic function, without overflow for large negative logits."""
    out = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + out), out / (1 + out)).astype(np.float32, copy=False)


def region_probabilities_array(logits: np.ndarray, output: str) -> np.ndarray:
    """Network logits (n, c, h, w) -> probabilities of WT, TC, ET float32 (n, 3, h, w).

    The same read of the outputs as `brainseg.models.outputs.region_probabilities`:
    `regions` are sigmoids; for `softmax`, WT = 1 - p(background), TC = p(necrosis) +
    p(enhancing), ET = p(enhancing).
    """
    if output == "regions":
        return _sigmoid(logits)
    if output == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        p = shifted / shifted.sum(axis=1, keepdims=True)
        return np.stack([1 - p[:, 0], p[:, 1] + p[:, 3], p[:, 3]], axis=1).astype(np.float32)
    raise BrainsegError(f"unknown output mode '{output}' (one of {', '.join(OUTPUTS)})")


def iter_batches(slices: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start index, float32 C-contiguous batch) of slices (s, c, ...), `batch_size`
    at a time: the batches every forward pass sees, torch module or `ArrayNetwork`."""
    for start in range(0, len(slices), batch_size):
        yield start, np.ascontiguousarray(slices[start : start + batch_size], dtype=np.float32)


def array_probabilities(model: ArrayNetwork, slices: np.ndarray, batch_size: int,
                        output: str) -> np.ndarray:
    """Region probabilities float32 (s, 3, h, w) of slices (s, c, h, w), batch by batch."""
    out = [region_probabilities_array(model(chunk), output)
           for _, chunk in iter_batches(slices, batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 3, *slices.shape[2:]), np.float32)
