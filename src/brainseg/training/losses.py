"""Segmentation losses: soft Dice + (binary) cross-entropy, with nnU-Net style deep supervision.

`SegmentationLoss` takes the network's outputs (a tensor, or the deep-supervision list) and the
BraTS labels (n, h, w) with values 0/1/2/4, and builds the targets of the output mode itself
(`brainseg.models.outputs`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from brainseg.data.labels import REGIONS, WT_ONLY, check_regions
from brainseg.models.outputs import class_targets, out_channels, region_targets


def soft_dice(probs: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per channel over the batch and space, averaged over channels.

    Args:
        probs: (n, c, h, w) probabilities, or (n, c, d, h, w).
        target: binary targets of the same shape.
        eps: smoothing added to numerator and denominator (an empty channel predicted empty: 0).
    """
    dims = (0, *range(2, probs.dim()))
    inter = (probs * target).sum(dims)
    total = probs.sum(dims) + target.sum(dims)
    return 1.0 - ((2 * inter + eps) / (total + eps)).mean()


def deep_supervision_weights(levels: int) -> list[float]:
    """nnU-Net weights 1, 1/2, 1/4, ... for `levels` outputs (finest first), summing to 1."""
    raw = [0.5**i for i in range(levels)]
    return [r / sum(raw) for r in raw]


def downsample_labels(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Nearest-neighbour resize of labels (n, h, w) or (n, d, h, w) to `size` (each output voxel
    takes the label at the centre of the input block it covers: mode "nearest-exact")."""
    if tuple(labels.shape[1:]) == tuple(size):
        return labels
    resized = functional.interpolate(
        labels[:, None].float(), size=tuple(size), mode="nearest-exact"
    )
    return resized[:, 0].to(labels.dtype)


class SegmentationLoss(nn.Module):
    """`dice_weight * soft Dice + ce_weight * cross-entropy` for one output mode.

    - "regions": sigmoid channels WT, TC, ET; soft Dice per channel + BCE with logits.
    - "softmax": classes background, 1, 2, 4; soft Dice of the 3 foreground probabilities against
      their one-hot targets + cross-entropy over the 4 classes.

    With a list of outputs (deep supervision, finest first), the loss of each level against the
    labels resized to that level (nearest neighbour), weighted 1, 1/2, 1/4, ... normalized to 1.
    Always computed in float32, whatever the dtype of the logits.

    Labels that annotate the whole tumour only (`regions` ("WT",)) train WT alone: the TC
    and ET channels take no loss ("regions"), or the classes reduce to tumour against
    background, p(WT) = 1 - p(background) ("softmax"): binary soft Dice + cross-entropy.

    Args:
        output: "regions" or "softmax".
        dice_weight: weight of the soft Dice term.
        ce_weight: weight of the (binary) cross-entropy term.
        regions: the regions the labels annotate: WT, TC, ET, or WT alone.

    Raises:
        BrainsegError: unknown output mode, or regions other than all or WT alone.
    """

    def __init__(
        self,
        output: str,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        regions: Sequence[str] = REGIONS,
    ) -> None:
        super().__init__()
        out_channels(output)  # refuses an unknown mode
        self.output, self.dice_weight, self.ce_weight = output, dice_weight, ce_weight
        self.wt_only = check_regions(tuple(regions), "loss") == WT_ONLY

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], labels: torch.Tensor
    ) -> torch.Tensor:
        """Scalar loss for logits (n, c, h, w) or a list of them, and labels int64 (n, h, w)
        (3D: logits (n, c, d, h, w), labels (n, d, h, w))."""
        if isinstance(outputs, torch.Tensor):
            return self.level_loss(outputs, labels)
        weights = deep_supervision_weights(len(outputs))
        return sum(
            w * self.level_loss(out, downsample_labels(labels, out.shape[2:]))
            for w, out in zip(weights, outputs, strict=True)
        )

    def level_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of one output (n, c, h, w) against labels of the same size (n, h, w)."""
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if self.output == "regions":
                target = region_targets(labels)
                if self.wt_only:
                    logits, target = logits[:, :1], target[:, :1]
                dice = soft_dice(torch.sigmoid(logits), target)
                ce = functional.binary_cross_entropy_with_logits(logits, target)
            elif self.wt_only:
                dice, ce = _tumour_vs_background(logits, labels)
            else:
                classes = class_targets(labels)
                one_hot = functional.one_hot(classes, 4).movedim(-1, 1).float()
                dice = soft_dice(torch.softmax(logits, dim=1)[:, 1:], one_hot[:, 1:])
                ce = functional.cross_entropy(logits, classes)
        return self.dice_weight * dice + self.ce_weight * ce


def _tumour_vs_background(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft Dice loss and binary cross-entropy of p(WT) = 1 - p(background) of softmax logits
    (n, 4, h, w) against WT = labels > 0; log-probabilities from log-sum-exp (stable)."""
    target = (labels > 0).float()
    total = torch.logsumexp(logits, dim=1)
    log_bg = logits[:, 0] - total
    log_wt = torch.logsumexp(logits[:, 1:], dim=1) - total
    dice = soft_dice(log_wt.exp()[:, None], target[:, None])
    ce = -(target * log_wt + (1 - target) * log_bg).mean()
    return dice, ce
