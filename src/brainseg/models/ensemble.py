"""An ensemble of cross-validation fold models that behaves as one network.

The members are averaged in probability space (the mean of their WT, TC, ET
probabilities, nnU-Net's default for fold ensembles). `forward` returns logits whose
`region_probabilities` are that mean (the logit of the mean for `regions`, the log of
the mean class probabilities for `softmax`), so everything downstream of a network
(thresholds, flip TTA, post-processing, predict) takes an ensemble unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from brainseg.models.outputs import region_probabilities

EPS = 1e-7  # probabilities are clamped to [EPS, 1 - EPS] before the logit


class Ensemble(nn.Module):
    """Mean of the probabilities of `members`, as logits.

    Args:
        members: networks with the same output mode and channels.
        output: their output mode (`regions` or `softmax`).
    """

    def __init__(self, members: list[nn.Module], output: str) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.output = output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.output == "regions":
            mean = torch.stack([torch.sigmoid(m(x).float()) for m in self.members]).mean(0)
            mean = mean.clamp(EPS, 1 - EPS)
            return torch.log(mean) - torch.log1p(-mean)
        mean = torch.stack([torch.softmax(m(x).float(), dim=1) for m in self.members]).mean(0)
        return torch.log(mean.clamp_min(EPS))

    def member_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Region probabilities of every member (members, n, 3, h, w), for inspection."""
        return torch.stack([region_probabilities(m(x).float(), self.output)
                            for m in self.members])


def build_network(config: dict) -> nn.Module:
    """The network of a checkpoint config: its U-Net, or the `Ensemble` of its fold models.

    A config with an `ensemble` entry (`{"folds": [...]}`) describes one member per fold,
    each built from `config["model"]`.
    """
    from brainseg.models.unet import build_model

    if "ensemble" not in config:
        return build_model(config["model"])
    members = [build_model(config["model"]) for _ in config["ensemble"]["folds"]]
    return Ensemble(members, config["model"].get("output", "regions"))
