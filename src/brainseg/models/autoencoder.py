"""A 3D convolutional autoencoder built from named blocks, for unsupervised anomaly maps.

`forward` reads like the diagram: a stem, `depth` down steps, a 1x1x1 squeeze to the
bottleneck and back, `depth` up steps, a 1x1x1 head. There is no skip connection, so
everything the decoder draws went through the bottleneck of `latent_channels` channels at
1 / 2**depth of the resolution: what the training volumes (tumour-free brain) never
showed is reconstructed badly, and the voxel-wise error marks it.

Any input size (n, c, z, h, w) whose spatial sides are multiples of 2**depth; `pad_to`
gives the padding a whole volume needs. Batch norm: in eval mode the network is a fixed
convolution stack, so a whole volume is reconstructed as its patches are.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from brainseg.errors import BrainsegError


class ConvBlock3d(nn.Sequential):
    """(3x3x3 conv → batch norm → LeakyReLU) twice."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(
            nn.Conv3d(in_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm3d(out_ch),
            nn.LeakyReLU(0.1, inplace=True),
            nn.Conv3d(out_ch, out_ch, 3, padding=1, bias=False), nn.BatchNorm3d(out_ch),
            nn.LeakyReLU(0.1, inplace=True),
        )


class Down3d(nn.Sequential):
    """Halve the resolution (2x2x2 strided conv), then a conv block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv3d(in_ch, in_ch, 2, stride=2), ConvBlock3d(in_ch, out_ch))


class Up3d(nn.Sequential):
    """Double the resolution (2x2x2 transposed conv), then a conv block."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.ConvTranspose3d(in_ch, in_ch, 2, stride=2), ConvBlock3d(in_ch, out_ch))


class Autoencoder3d(nn.Module):
    """Encoder → bottleneck → decoder, no skip connections.

    Args:
        in_channels: modalities m of the input (n, m, z, h, w).
        base_channels: width of the first level, doubled at each down step.
        depth: down (and up) steps; spatial sides must be multiples of 2**depth.
        latent_channels: channels of the bottleneck.
    """

    def __init__(self, in_channels: int, base_channels: int = 16, depth: int = 3,
                 latent_channels: int = 16) -> None:
        super().__init__()
        if min(in_channels, base_channels, depth, latent_channels) < 1:
            raise BrainsegError(
                f"autoencoder: in_channels {in_channels}, base_channels {base_channels}, depth "
                f"{depth} and latent_channels {latent_channels} must all be >= 1")
        widths = [base_channels * 2**k for k in range(depth + 1)]
        self.depth = depth
        self.stem = ConvBlock3d(in_channels, widths[0])
        self.down = nn.ModuleList(Down3d(a, b) for a, b in pairwise(widths))
        self.squeeze = nn.Conv3d(widths[-1], latent_channels, 1)
        self.expand = nn.Conv3d(latent_channels, widths[-1], 1)
        rev = widths[::-1]
        self.up = nn.ModuleList(Up3d(a, b) for a, b in pairwise(rev))
        self.head = nn.Conv3d(widths[0], in_channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(n, m, z, h, w) → latent (n, latent_channels, z, h, w / 2**depth)."""
        step = 2**self.depth
        if any(side % step for side in x.shape[2:]):
            raise BrainsegError(f"autoencoder input {tuple(x.shape)}: spatial sides must be "
                                f"multiples of 2^depth = {step} (see pad_to)")
        x = self.stem(x)
        for down in self.down:
            x = down(x)
        return self.squeeze(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = functional.leaky_relu(self.expand(z), 0.1)
        for up in self.up:
            x = up(x)
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction (n, m, z, h, w) of `x` (n, m, z, h, w)."""
        return self.decode(self.encode(x))


def pad_to(shape: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Each side of `shape` rounded up to a multiple of 2**depth."""
    step = 2**depth
    return tuple(-(-side // step) * step for side in shape)


def build_autoencoder(config: dict[str, Any]) -> Autoencoder3d:
    """The autoencoder of a config: `in_channels` and the `anomaly` params' sizes."""
    return Autoencoder3d(config["in_channels"], config["base_channels"], config["depth"],
                         config["latent_channels"])
