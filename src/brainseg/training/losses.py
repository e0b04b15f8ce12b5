"""Dice + binary cross-entropy on region logits (sigmoid outputs WT, TC, ET)."""

from __future__ import annotations

import torch
from torch import nn


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per channel over the batch and space, averaged over channels.

    Args:
        logits: (n, c, h, w) raw outputs.
        target: (n, c, h, w) binary targets.
    """
    probs = torch.sigmoid(logits)
    dims = (0, 2, 3)
    inter = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


class DiceBCELoss(nn.Module):
    """`dice_weight * soft Dice loss + bce_weight * BCE with logits`."""

    def __init__(self, dice_weight: float = 1.0, bce_weight: float = 1.0) -> None:
        super().__init__()
        self.dice_weight, self.bce_weight = dice_weight, bce_weight
        self.bce = nn.BCEWithLogitsLoss()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.dice_weight * soft_dice_loss(logits, target) + self.bce_weight * self.bce(
            logits, target
        )


class SegmentationLoss(nn.Module):
    """Interim (regions only, no deep supervision): Dice + BCE on labels (n, h, w)."""

    def __init__(self, output: str, dice_weight: float = 1.0, ce_weight: float = 1.0) -> None:
        super().__init__()
        self.inner = DiceBCELoss(dice_weight, ce_weight)

    def forward(self, outputs, labels: torch.Tensor) -> torch.Tensor:
        from brainseg.models.outputs import region_targets

        return self.inner(outputs.float(), region_targets(labels))
