"""The arch registry of `build_model`: a registered factory is what train and evaluate build."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_checkpoint
from brainseg.models.unet import UNet, build_model, register_arch, registered_archs

CONFIG = {"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0}


class Pointwise(nn.Module):
    """A 1x1 convolution: the smallest model with the in/out channels it was built with."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def pointwise(config: dict) -> nn.Module:
    return Pointwise(config["in_channels"], config["out_channels"])


def test_registered_factory_gets_the_config_with_channels_filled_in():
    seen = {}

    def factory(config):
        seen.update(config)
        return pointwise(config)

    register_arch("test_seen", factory)
    model = build_model({**CONFIG, "arch": "test_seen", "output": "softmax"})
    assert isinstance(model, Pointwise) and "test_seen" in registered_archs()
    assert seen["in_channels"] == 4 and seen["out_channels"] == 4 and seen["depth"] == 2
    assert model(torch.randn(2, 4, 8, 8)).shape == (2, 4, 8, 8)


def test_built_in_archs_are_unchanged_and_cannot_be_replaced():
    register_arch("test_pointwise", pointwise)
    assert isinstance(build_model({**CONFIG, "arch": "unet"}), UNet)
    with pytest.raises(BrainsegError, match="'unet' is a built-in arch"):
        register_arch("unet", pointwise)
    with pytest.raises(BrainsegError, match="not callable"):
        register_arch("test_bad", "not a factory")


def test_unknown_arch_message_lists_the_registered_ones():
    register_arch("test_pointwise", pointwise)
    with pytest.raises(BrainsegError, match=r"unknown model arch 'nope' \(unet \| attention_unet.*"
                                            r"test_pointwise"):
        build_model({**CONFIG, "arch": "nope"})


def test_checkpoint_of_a_registered_arch_loads_for_evaluation(tmp_path):
    register_arch("test_pointwise", pointwise)
    model_cfg = {**CONFIG, "arch": "test_pointwise", "output": "regions", "in_channels": 4,
                 "out_channels": 3}
    trained = build_model(model_cfg)
    config = {"model": model_cfg,
              "extract": {"image_size": 16, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]}}
    torch.save({"state_dict": trained.state_dict(), "config": config}, tmp_path / "m.pt")
    model, _ = load_checkpoint(tmp_path / "m.pt")
    assert isinstance(model, Pointwise) and not model.training
    assert torch.equal(model.conv.weight, trained.conv.weight)
