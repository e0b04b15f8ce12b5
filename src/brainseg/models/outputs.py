"""What the network's output channels mean, and how training targets are made from labels.

Two output modes (`train.model.output`):
- `regions`: 3 sigmoid channels, the nested BraTS regions WT, TC, ET;
- `softmax`: 4 classes, background, necrosis (label 1), edema (label 2), enhancing (label 4).

Everything downstream of the network (validation, thresholds, post-processing,
prediction) works on region probabilities (WT, TC, ET), whatever the mode.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from brainseg.data.labels import LABELS, REGION_LABELS, REGIONS
from brainseg.errors import BrainsegError

# torch is imported by the functions that need it: the NumPy twin of region_probabilities
# (brainseg.models.arrays) reads OUTPUTS without it
if TYPE_CHECKING:
    import torch

OUTPUTS: dict[str, int] = {"regions": 3, "softmax": 4}  # mode -> number of output channels
CLASS_LABELS: tuple[int, ...] = LABELS  # softmax class index -> BraTS label


def out_channels(output: str) -> int:
    """Number of network output channels for an output mode."""
    if output not in OUTPUTS:
        raise BrainsegError(f"unknown output mode '{output}' (one of {', '.join(OUTPUTS)})")
    return OUTPUTS[output]


def region_targets(labels: torch.Tensor) -> torch.Tensor:
    """BraTS labels (n, h, w) -> float WT, TC, ET masks (n, 3, h, w)."""
    import torch

    masks = []
    for region in REGIONS:
        values = REGION_LABELS[region]
        mask = labels == values[0]
        for value in values[1:]:
            mask |= labels == value
        masks.append(mask)
    return torch.stack(masks, dim=1).float()


def class_targets(labels: torch.Tensor) -> torch.Tensor:
    """BraTS labels (n, h, w) -> class indices int64 (n, h, w): 0, 1, 2, and 3 for label 4."""
    import torch

    classes = labels.long()
    return torch.where(classes == 4, torch.full_like(classes, 3), classes)


def region_probabilities(logits: torch.Tensor, output: str) -> torch.Tensor:
    """Network logits (n, c, h, w) -> probabilities of WT, TC, ET (n, 3, h, w).

    For `softmax`: WT = 1 - p(background), TC = p(necrosis) + p(enhancing),
    ET = p(enhancing), so that ET <= TC <= WT holds voxel by voxel.
    """
    import torch

    if output == "regions":
        return torch.sigmoid(logits)
    if output == "softmax":
        p = torch.softmax(logits, dim=1)
        return torch.stack([1 - p[:, 0], p[:, 1] + p[:, 3], p[:, 3]], dim=1)
    raise BrainsegError(f"unknown output mode '{output}' (one of {', '.join(OUTPUTS)})")
