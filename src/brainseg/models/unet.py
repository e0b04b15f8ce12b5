"""A 2D U-Net (optionally with attention gates) built from named blocks.

`forward` reads like the diagram: a stem, `depth` down steps, `depth` up steps, a 1x1 head.

- Any input size (n, in_channels, h, w): the input is zero-padded at the bottom and right to a
  multiple of 2**depth inside `forward`, and the logits are cropped back to (h, w).
- `attention=True` gives the Attention U-Net of Oktay et al. 2018: each skip connection passes
  through an additive attention gate whose gating signal is the coarser decoder level.
- `deep_supervision=k > 0` (nnU-Net style): in training mode `forward` returns
  `[full-resolution logits, k coarser logits]`, the coarser ones from the k decoder levels just
  above the last, each with its own 1x1 head; in eval mode only the full-resolution logits.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from brainseg.errors import BrainsegError
from brainseg.models.outputs import out_channels as output_channels

ARCHS: tuple[str, ...] = ("unet", "attention_unet")

ModelFactory = Callable[[dict[str, Any]], nn.Module]
_REGISTERED: dict[str, ModelFactory] = {}


def register_arch(name: str, factory: ModelFactory) -> None:
    """Let `build_model` (and so training and evaluation) build `arch: name` with `factory`.

    An extension point for code that drives the stages from Python (benchmarks/bench_peers.py
    trains MONAI's and segmentation_models_pytorch's U-Nets through our loop with it); the
    params schema still allows only the built-in `ARCHS`, so a registered arch is reachable
    from a params dict built in code, not from params.yaml. The registry lives in this process
    only: a checkpoint of a registered arch loads where the same factory is registered again.
    Registering a name again replaces its factory.

    Args:
        name: the value of `train.model.arch` that selects the factory.
        factory: called with the model config (the `train.model` params, with `in_channels`
            and `out_channels` filled in); returns a module mapping (n, in_channels, h, w) to
            logits (n, out_channels, h, w) for the slice size of `extract.image_size`.

    Raises:
        BrainsegError: `name` is a built-in arch, or `factory` is not callable.
    """
    if name in ARCHS:
        raise BrainsegError(f"register_arch: '{name}' is a built-in arch ({' | '.join(ARCHS)})")
    if not callable(factory):
        raise BrainsegError(f"register_arch: the factory of '{name}' is not callable")
    _REGISTERED[name] = factory


def registered_archs() -> tuple[str, ...]:
    """Names added with `register_arch`, sorted."""
    return tuple(sorted(_REGISTERED))


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise BrainsegError(f"unknown norm '{kind}' (batch | instance | none)")


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


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eq. 1-2, grid attention).

    `alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi)` is computed on the coarse grid of the
    gating signal g (W_x is a 2x2 conv of stride 2, as in the authors' code), upsampled
    bilinearly to the skip's grid, and the skip features are scaled by it.

    Args:
        skip_ch: channels of the skip features x (n, skip_ch, 2h, 2w).
        gate_ch: channels of the gating signal g (n, gate_ch, h, w), the coarser decoder level.
        inter_ch: channels of the intermediate space.
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int) -> None:
        super().__init__()
        self.w_x = nn.Conv2d(skip_ch, inter_ch, 2, stride=2, bias=False)
        self.w_g = nn.Conv2d(gate_ch, inter_ch, 1)
        self.psi = nn.Conv2d(inter_ch, 1, 1)

    def attention(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], (n, 1, 2h, 2w)."""
        q = self.psi(functional.relu(self.w_x(skip) + self.w_g(gate)))
        alpha = torch.sigmoid(q)
        return functional.interpolate(alpha, size=skip.shape[-2:], mode="bilinear")

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.attention(skip, gate)


class Up(nn.Module):
    """2x2 transposed conv, concatenation with the (optionally gated) skip, then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, attention: bool = False) -> None:
        super().__init__()
        self.gate = AttentionGate(out_ch, in_ch, max(out_ch // 2, 1)) if attention else None
        self.up = nn.ConvTranspose2d(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            skip = self.gate(skip, x)
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """U-Net: `depth` down steps of doubling width from `base_channels`, mirrored up steps.

    Args:
        in_channels: input modalities (4 for BraTS).
        out_channels: output maps (3 regions WT, TC, ET, or 4 softmax classes).
        base_channels: width of the first level.
        depth: number of down-sampling steps.
        norm: "batch", "instance" or "none".
        dropout: dropout probability at the bottleneck.
        attention: attention gates on the skip connections (Attention U-Net).
        deep_supervision: number k of coarser decoder levels with their own head (0 <= k < depth).

    Raises:
        BrainsegError: unknown norm, or deep_supervision outside [0, depth).
    """

    def __init__(
        self,
        in_channels: int = 4,
        out_channels: int = 3,
        base_channels: int = 16,
        depth: int = 4,
        norm: str = "batch",
        dropout: float = 0.0,
        attention: bool = False,
        deep_supervision: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= deep_supervision < depth:
            raise BrainsegError(
                f"invalid key 'train.model.deep_supervision': {deep_supervision} must be >= 0 and "
                f"below train.model.depth ({depth})"
            )
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth = depth
        self.stem = DoubleConv(in_channels, widths[0], norm)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], norm, dropout if i == depth - 1 else 0.0)
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], norm, attention) for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.aux_heads = nn.ModuleList(
            nn.Conv2d(widths[j], out_channels, 1) for j in range(1, deep_supervision + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits (n, out_channels, h, w), or in training with deep supervision a list."""
        h, w = x.shape[-2:]
        x = self._pad(x)
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        decoded = []  # decoder outputs, coarsest first
        for up in self.ups:
            x = up(x, skips.pop())
            decoded.append(x)
        logits = self.head(x)[..., :h, :w]
        if not (self.training and len(self.aux_heads)):
            return logits
        return [logits, *self._aux_logits(decoded[-2::-1], h, w)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad bottom and right to a multiple of 2**depth (pixel k of level j stays at
        k * 2**j of the input, so coarser outputs crop like the full one)."""
        m = 2**self.depth
        pad_h, pad_w = -x.shape[-2] % m, -x.shape[-1] % m
        if torch.onnx.is_in_onnx_export():  # always, by 0 too: an exported graph otherwise
            return functional.pad(x, (0, pad_w, 0, pad_h))  # keeps the example's branch
        return functional.pad(x, (0, pad_w, 0, pad_h)) if pad_h or pad_w else x

    def _aux_logits(self, features: list[torch.Tensor], h: int, w: int) -> list[torch.Tensor]:
        """Heads on decoder levels j = 1..k (finest first), cropped to ceil(h / 2**j) rows and
        ceil(w / 2**j) columns."""
        out = []
        for j, (head, feat) in enumerate(zip(self.aux_heads, features, strict=False), start=1):
            out.append(head(feat)[..., : -(-h // 2**j), : -(-w // 2**j)])
        return out


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build the network from the `train.model` params (plus optional in/out channels).

    `arch` defaults to "unet" and `deep_supervision` to 0 (checkpoints written before these keys
    existed); `out_channels` defaults to the channels of `output` (regions: 3, softmax: 4).
    An arch added with `register_arch` is built by its factory (a `UNet` otherwise).

    Raises:
        BrainsegError: unknown arch, norm or output, or deep_supervision >= depth.
    """
    arch = config.get("arch", "unet")
    in_ch = config.get("in_channels", 4)
    out_ch = config.get("out_channels", output_channels(config.get("output", "regions")))
    if arch in _REGISTERED:
        return _REGISTERED[arch]({**config, "in_channels": in_ch, "out_channels": out_ch})
    if arch not in ARCHS:
        known = " | ".join(ARCHS + registered_archs())
        raise BrainsegError(
            f"invalid key 'train.model.arch': unknown model arch '{arch}' ({known})"
        )
    return UNet(
        in_channels=in_ch,
        out_channels=out_ch,
        base_channels=config["base_channels"],
        depth=config["depth"],
        norm=config["norm"],
        dropout=config["dropout"],
        attention=arch == "attention_unet",
        deep_supervision=config.get("deep_supervision", 0),
    )
