"""BatchNorm folded into the convolutions at inference: same outputs, fewer modules."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from brainseg.errors import BrainsegError
from brainseg.models.fusion import fold_batchnorm
from brainseg.models.unet import build_model
from tests.evaluation.test_inference import MODEL


def trained_like(config: dict) -> nn.Module:
    """A U-Net whose norms hold non-trivial running statistics and affine parameters."""
    torch.manual_seed(0)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


@pytest.mark.parametrize("arch", ["unet", "attention_unet"])
def test_folded_network_gives_the_same_logits(arch):
    config = {**MODEL, "arch": arch, "norm": "batch"}
    model = trained_like(config)
    x = torch.randn(3, config["in_channels"], 32, 32)
    with torch.no_grad():
        before = model(x)
        after = fold_batchnorm(model)(x)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-4)


def test_instance_norm_is_left_alone():
    model = build_model({**MODEL, "norm": "instance"}).eval()
    norms = sum(isinstance(m, nn.InstanceNorm2d) for m in model.modules())
    fold_batchnorm(model)
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in model.modules()) == norms > 0


def test_a_training_model_is_refused():
    with pytest.raises(BrainsegError, match="training mode"):
        fold_batchnorm(build_model(MODEL).train())
