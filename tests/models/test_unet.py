from __future__ import annotations

import pytest
import torch

from brainseg.models.unet import UNet, build_model


@pytest.mark.parametrize(("depth", "size", "norm"), [(1, 16, "batch"), (3, 48, "instance"),
                                                      (4, 64, "none")])
def test_unet_keeps_spatial_size(depth, size, norm):
    model = UNet(in_channels=4, out_channels=3, base_channels=4, depth=depth, norm=norm)
    out = model(torch.randn(2, 4, size, size))
    assert out.shape == (2, 3, size, size)


def test_build_model_from_params_and_gradients_flow():
    model = build_model({"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.1})
    out = model(torch.randn(2, 4, 32, 32))
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match="unknown norm 'group'"):
        UNet(norm="group")
