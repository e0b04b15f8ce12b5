"""A 2D U-Net built from named blocks, so that `forward` reads like the diagram.

Input (n, in_channels, h, w) with h and w divisible by 2**depth; output logits
(n, out_channels, h, w).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (batch | instance | none)")


class DoubleConv(nn.Sequential):
    """(3x3 conv → norm → ReLU) twice."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        bias = norm == "none"
        super().__init__(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=bias),
            _norm(norm, out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=bias),
            _norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool, then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__(nn.MaxPool2d(2), DoubleConv(in_ch, out_ch, norm), nn.Dropout2d(dropout))


class Up(nn.Module):
    """2x2 transposed conv, concatenation with the skip connection, then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net: `depth` down steps of doubling width from `base_channels`, mirrored up steps.

    Args:
        in_channels: input modalities (4 for BraTS).
        out_channels: output maps (3 regions WT, TC, ET).
        base_channels: width of the first level.
        depth: number of down-sampling steps.
        norm: "batch", "instance" or "none".
        dropout: dropout probability at the bottleneck.
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.stem = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], norm, dropout if i == depth - 1 else 0.0)
            for i in range(depth)
        )
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i], norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.head(x)


def build_model(config: dict[str, Any]) -> UNet:
    """Build a U-Net from the `train.model` params (plus in/out channels)."""
    return UNet(
        in_channels=config.get("in_channels", 4),
        out_channels=config.get("out_channels", 3),
        base_channels=config["base_channels"],
        depth=config["depth"],
        norm=config["norm"],
        dropout=config["dropout"],
    )
