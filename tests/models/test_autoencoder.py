"""The 3D autoencoder: shapes through its bottleneck, and inputs it refuses."""

from __future__ import annotations

import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.models.autoencoder import Autoencoder3d, build_autoencoder, pad_to


@pytest.mark.parametrize(("depth", "shape"), [(1, (8, 6, 10)), (2, (16, 16, 16)),
                                              (3, (16, 24, 32))])
def test_forward_reconstructs_the_input_shape_through_a_smaller_bottleneck(depth, shape):
    model = Autoencoder3d(in_channels=3, base_channels=4, depth=depth, latent_channels=5).eval()
    x = torch.randn(2, 3, *shape)
    latent = model.encode(x)
    assert latent.shape == (2, 5, *(s // 2**depth for s in shape))
    assert model(x).shape == x.shape
    assert len(model.down) == len(model.up) == depth


def test_sides_not_divisible_by_two_to_the_depth_are_refused_and_pad_to_fixes_them():
    model = build_autoencoder({"in_channels": 1, "base_channels": 2, "depth": 2,
                               "latent_channels": 2})
    with pytest.raises(BrainsegError, match=r"multiples of 2\^depth = 4"):
        model(torch.zeros(1, 1, 6, 8, 8))
    assert pad_to((6, 8, 13), 2) == (8, 8, 16)
    assert model(torch.zeros(1, 1, *pad_to((6, 8, 13), 2))).shape == (1, 1, 8, 8, 16)
    with pytest.raises(BrainsegError, match="must all be >= 1"):
        Autoencoder3d(1, 0, 2, 2)
