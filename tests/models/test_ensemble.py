"""The fold ensemble: mean of probabilities, as logits any downstream code can read."""

from __future__ import annotations

import pytest
import torch

from brainseg.models.ensemble import Ensemble, build_network
from brainseg.models.outputs import region_probabilities
from brainseg.models.unet import UNet, build_model

MODEL = {"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0}


@pytest.mark.parametrize("output", ["regions", "softmax"])
def test_ensemble_logits_give_the_mean_of_member_probabilities(output):
    torch.manual_seed(0)
    members = [build_model({**MODEL, "output": output}).eval() for _ in range(3)]
    ensemble = Ensemble(members, output).eval()
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        expected = torch.stack([region_probabilities(m(x), output) for m in members]).mean(0)
        got = region_probabilities(ensemble(x), output)
        assert torch.allclose(got, expected, atol=1e-5)
        assert torch.allclose(ensemble.member_probabilities(x).mean(0), expected, atol=1e-6)
    # the members really differ, so the mean is not any one of them
    assert not torch.allclose(region_probabilities(members[0](x), output), expected, atol=1e-3)


def test_build_network_reads_the_ensemble_entry_of_a_config():
    single = build_network({"model": MODEL})
    assert isinstance(single, UNet)
    ensemble = build_network({"model": MODEL, "ensemble": {"folds": [0, 1, 2, 3]}})
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 4
    assert set(ensemble.state_dict()) == {f"members.{i}.{k}" for i in range(4)
                                          for k in single.state_dict()}


def test_an_empty_ensemble_is_refused():
    with pytest.raises(ValueError, match="at least one member"):
        Ensemble([], "regions")
