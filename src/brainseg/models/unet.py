"""A 2D or 3D U-Net (optionally with attention gates) built from named blocks.

`forward` reads like the diagram: a stem, `depth` down steps, `depth` up steps, a 1x1 head.
One code path for both: `dims` (2 or 3) picks Conv2d/Conv3d, the norms, pooling and dropout
of that dimension (`Layers`); with dims 2 the network is the 2D U-Net it always was.

- Any input size (n, in_channels, h, w), or (n, in_channels, d, h, w) in 3D: the input is
  zero-padded at the end of every spatial axis to a multiple of 2**depth inside `forward`,
  and the logits are cropped back to the input's size.
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


DIMS: tuple[int, ...] = (2, 3)


class Layers:
    """The layer classes of one spatial dimension (2: images, 3: volumes).

    Raises:
        BrainsegError: `dims` is neither 2 nor 3.
    """

    def __init__(self, dims: int) -> None:
        if dims not in DIMS:
            raise BrainsegError(f"invalid key 'train.model.dims': {dims!r} (2 | 3)")
        self.dims = dims
        self.conv = nn.Conv2d if dims == 2 else nn.Conv3d
        self.conv_transpose = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose3d
        self.batch_norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        self.instance_norm = nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d
        self.max_pool = nn.MaxPool2d if dims == 2 else nn.MaxPool3d
        self.dropout = nn.Dropout2d if dims == 2 else nn.Dropout3d
        self.interpolation = "bilinear" if dims == 2 else "trilinear"

    def norm(self, kind: str, channels: int) -> nn.Module:
        if kind == "batch":
            return self.batch_norm(channels)
        if kind == "instance":
            return self.instance_norm(channels, affine=True)
        if kind == "none":
            return nn.Identity()
        raise BrainsegError(f"unknown norm '{kind}' (batch | instance | none)")


LAYERS_2D = Layers(2)


class DoubleConv(nn.Sequential):
    """(3x3 conv → norm → ReLU) twice (3x3x3 in 3D)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, layers: Layers = LAYERS_2D) -> None:
        bias = norm == "none"
        super().__init__(
            layers.conv(in_ch, out_ch, 3, padding=1, bias=bias),
            layers.norm(norm, out_ch),
            nn.ReLU(inplace=True),
            layers.conv(out_ch, out_ch, 3, padding=1, bias=bias),
            layers.norm(norm, out_ch),
            nn.ReLU(inplace=True),
        )


class Down(nn.Sequential):
    """2x2 max-pool (2x2x2 in 3D), then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, dropout: float = 0.0,
                 layers: Layers = LAYERS_2D) -> None:
        super().__init__(layers.max_pool(2), DoubleConv(in_ch, out_ch, norm, layers),
                         layers.dropout(dropout))


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018, eq. 1-2, grid attention).

    `alpha = sigmoid(psi(relu(W_x x + W_g g + b_g)) + b_psi)` is computed on the coarse grid of the
    gating signal g (W_x is a 2x2 conv of stride 2, as in the authors' code), upsampled
    bilinearly to the skip's grid, and the skip features are scaled by it.

    Args:
        skip_ch: channels of the skip features x (n, skip_ch, 2h, 2w).
        gate_ch: channels of the gating signal g (n, gate_ch, h, w), the coarser decoder level.
        inter_ch: channels of the intermediate space.
        layers: the layers of the spatial dimension (3D: (n, c, 2d, 2h, 2w) skips, trilinear).
    """

    def __init__(self, skip_ch: int, gate_ch: int, inter_ch: int,
                 layers: Layers = LAYERS_2D) -> None:
        super().__init__()
        self.w_x = layers.conv(skip_ch, inter_ch, 2, stride=2, bias=False)
        self.w_g = layers.conv(gate_ch, inter_ch, 1)
        self.psi = layers.conv(inter_ch, 1, 1)
        self.mode = layers.interpolation

    def attention(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        """Attention coefficients in [0, 1], (n, 1, 2h, 2w) (or (n, 1, 2d, 2h, 2w))."""
        q = self.psi(functional.relu(self.w_x(skip) + self.w_g(gate)))
        alpha = torch.sigmoid(q)
        return functional.interpolate(alpha, size=skip.shape[2:], mode=self.mode)

    def forward(self, skip: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        return skip * self.attention(skip, gate)


class Up(nn.Module):
    """2x2 transposed conv, concatenation with the (optionally gated) skip, then a double conv."""

    def __init__(self, in_ch: int, out_ch: int, norm: str, attention: bool = False,
                 layers: Layers = LAYERS_2D) -> None:
        super().__init__()
        self.gate = (AttentionGate(out_ch, in_ch, max(out_ch // 2, 1), layers) if attention
                     else None)
        self.up = layers.conv_transpose(in_ch, out_ch, 2, stride=2)
        self.conv = DoubleConv(2 * out_ch, out_ch, norm, layers)

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
        dims: 2 (slices (n, c, h, w)) or 3 (volumes (n, c, d, h, w)).

    Raises:
        BrainsegError: unknown norm, dims not 2 or 3, or deep_supervision outside [0, depth).
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
        dims: int = 2,
    ) -> None:
        super().__init__()
        layers = Layers(dims)
        if not 0 <= deep_supervision < depth:
            raise BrainsegError(
                f"invalid key 'train.model.deep_supervision': {deep_supervision} must be >= 0 and "
                f"below train.model.depth ({depth})"
            )
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.depth, self.dims = depth, dims
        self.stem = DoubleConv(in_channels, widths[0], norm, layers)
        self.downs = nn.ModuleList(
            Down(widths[i], widths[i + 1], norm, dropout if i == depth - 1 else 0.0, layers)
            for i in range(depth)
        )
        self.ups = nn.ModuleList(
            Up(widths[i + 1], widths[i], norm, attention, layers) for i in reversed(range(depth))
        )
        self.head = layers.conv(widths[0], out_channels, 1)
        self.aux_heads = nn.ModuleList(
            layers.conv(widths[j], out_channels, 1) for j in range(1, deep_supervision + 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Logits (n, out_channels, *size) for an input (n, in_channels, *size) with `dims`
        spatial axes, or in training with deep supervision a list."""
        if x.dim() != self.dims + 2:
            raise BrainsegError(f"a {self.dims}D U-Net takes (n, c{', d' * (self.dims == 3)}, "
                                f"h, w) inputs, got shape {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        x = self._pad(x)
        skips = [self.stem(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        decoded = []  # decoder outputs, coarsest first
        for up in self.ups:
            x = up(x, skips.pop())
            decoded.append(x)
        logits = _crop(self.head(x), size, 1)
        if not (self.training and len(self.aux_heads)):
            return logits
        return [logits, *self._aux_logits(decoded[-2::-1], size)]

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Zero-pad the end of every spatial axis to a multiple of 2**depth (voxel k of level
        j stays at k * 2**j of the input, so coarser outputs crop like the full one)."""
        m = 2**self.depth
        pads = [-n % m for n in x.shape[2:]]
        pad = tuple(v for p in reversed(pads) for v in (0, p))  # last axis first, as F.pad
        if torch.onnx.is_in_onnx_export():  # always, by 0 too: an exported graph otherwise
            return functional.pad(x, pad)  # keeps the example's branch
        return functional.pad(x, pad) if any(pads) else x

    def _aux_logits(self, features: list[torch.Tensor], size: tuple[int, ...]
                    ) -> list[torch.Tensor]:
        """Heads on decoder levels j = 1..k (finest first), cropped to ceil(n / 2**j) along
        every spatial axis of size n."""
        out = []
        for j, (head, feat) in enumerate(zip(self.aux_heads, features, strict=False), start=1):
            out.append(_crop(head(feat), size, 2**j))
        return out


def _crop(x: torch.Tensor, size: tuple[int, ...], factor: int) -> torch.Tensor:
    """`x` (n, c, ...) cropped to ceil(size / factor) along each spatial axis."""
    return x[(..., *(slice(0, -(-n // factor)) for n in size))]


def build_model(config: dict[str, Any]) -> nn.Module:
    """Build the network from the `train.model` params (plus optional in/out channels).

    `arch` defaults to "unet", `deep_supervision` to 0 and `dims` to 2 (checkpoints written
    before these keys existed); `out_channels` defaults to the channels of `output` (regions: 3,
    softmax: 4).
    An arch added with `register_arch` is built by its factory (a `UNet` otherwise).

    Raises:
        BrainsegError: unknown arch, norm or output, dims not 2 or 3, or deep_supervision
            >= depth.
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
        dims=config.get("dims", 2),
    )
