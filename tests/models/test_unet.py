from __future__ import annotations

import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.models.unet import AttentionGate, UNet, build_model

ARCHS = ("unet", "attention_unet")


def small(arch="unet", **overrides):
    config = {"arch": arch, "base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0,
              "deep_supervision": 0}
    return build_model({**config, **overrides})


@pytest.mark.parametrize(("depth", "size", "norm"), [(1, 16, "batch"), (3, 48, "instance"),
                                                      (4, 64, "none")])
def test_unet_keeps_spatial_size(depth, size, norm):
    model = UNet(in_channels=4, out_channels=3, base_channels=4, depth=depth, norm=norm)
    out = model(torch.randn(2, 4, size, size))
    assert out.shape == (2, 3, size, size)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("depth", "h", "w"), [(1, 7, 5), (2, 37, 50), (3, 65, 65), (4, 37, 50)])
def test_any_input_size_and_batch_of_one(arch, depth, h, w):
    model = small(arch, depth=depth).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 4, h, w))
    assert out.shape == (1, 3, h, w)


def test_odd_input_is_zero_padded_bottom_right_and_cropped_back():
    torch.manual_seed(0)
    model = small(depth=2).eval()
    x = torch.randn(1, 4, 35, 34)
    with torch.no_grad():
        out = model(x)
        padded = model(torch.nn.functional.pad(x, (0, 2, 0, 1)))  # to 36 x 36, a multiple of 4
    assert out.shape == (1, 3, 35, 34)
    assert torch.allclose(out, padded[..., :35, :34], atol=1e-6)


def test_softmax_output_gives_four_channels():
    model = small(output="softmax").eval()
    assert model(torch.randn(2, 4, 16, 16)).shape == (2, 4, 16, 16)
    assert small(out_channels=5).eval()(torch.randn(1, 4, 8, 8)).shape == (1, 5, 8, 8)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize(("depth", "k"), [(2, 1), (4, 3)])
def test_deep_supervision_list_in_training_and_tensor_in_eval(arch, depth, k):
    model = small(arch, depth=depth, deep_supervision=k)
    out = model(torch.randn(2, 4, 37, 50))
    assert isinstance(out, list) and len(out) == k + 1
    expected = [(2, 3, -(-37 // 2**j), -(-50 // 2**j)) for j in range(k + 1)]
    assert [tuple(o.shape) for o in out] == expected
    model.eval()
    with torch.no_grad():
        full = model(torch.randn(2, 4, 37, 50))
    assert isinstance(full, torch.Tensor) and full.shape == (2, 3, 37, 50)


def test_without_deep_supervision_training_output_is_a_tensor():
    out = small("attention_unet")(torch.randn(2, 4, 16, 16))
    assert isinstance(out, torch.Tensor)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("k", [0, 2])
def test_gradients_reach_every_parameter(arch, k):
    model = small(arch, depth=3, dropout=0.1, deep_supervision=k)
    out = model(torch.randn(2, 4, 24, 20))
    outputs = out if isinstance(out, list) else [out]
    sum(o.square().mean() for o in outputs).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing, missing


def test_attention_adds_only_the_gates():
    plain, gated = small("unet", depth=3), small("attention_unet", depth=3)
    extra = {n for n, _ in gated.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert extra and all(".gate." in n for n in extra)
    assert sum(isinstance(m, AttentionGate) for m in gated.modules()) == 3


def test_attention_gate_scales_the_skip_by_coefficients_in_zero_one():
    torch.manual_seed(0)
    gate = AttentionGate(skip_ch=4, gate_ch=8, inter_ch=2)
    skip, g = torch.randn(2, 4, 10, 12), torch.randn(2, 8, 5, 6)
    alpha = gate.attention(skip, g)
    assert alpha.shape == (2, 1, 10, 12)
    assert bool((alpha > 0).all()) and bool((alpha < 1).all())
    assert torch.allclose(gate(skip, g), skip * alpha)
    assert not torch.allclose(alpha, alpha.mean()), "coefficients depend on the inputs"


@pytest.mark.parametrize("arch", ARCHS)
def test_channels_last_and_bf16_autocast(arch):
    model = small(arch, depth=3, deep_supervision=1).to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 37, 50).contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert [o.dtype for o in out] == [torch.bfloat16] * 2
    assert out[0].shape == (2, 3, 37, 50) and bool(torch.isfinite(out[0].float()).all())
    out[0].float().mean().backward()
    model.eval()
    with torch.no_grad():
        reference = model(x.contiguous())
        assert torch.allclose(model(x), reference, atol=1e-5)


def test_unknown_arch_and_norm_are_refused():
    with pytest.raises(BrainsegError, match="unknown model arch 'transunet'"):
        small("transunet")
    with pytest.raises(BrainsegError, match="unknown norm 'group'"):
        UNet(norm="group")


@pytest.mark.parametrize("k", [2, 3, -1])
def test_deep_supervision_must_stay_below_depth(k):
    with pytest.raises(BrainsegError, match=rf"deep_supervision': {k} .*depth \(2\)"):
        small(depth=2, deep_supervision=k)


def test_old_checkpoint_configs_build_a_plain_unet():
    model = build_model({"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.1})
    assert not model.aux_heads and all(up.gate is None for up in model.ups)


# SHA-256 of the initial weights (names and bytes, in state_dict order) of three 2D U-Nets
# built after torch.manual_seed(0), recorded with the 2D-only implementation that preceded
# `dims`: with dims 2 the network is built by the same layers in the same order, so its
# initialisation (and so a training) is bit-identical.
REFERENCE_2D = {
    "unet-batch": ({"arch": "unet", "base_channels": 4, "depth": 3, "norm": "batch",
                    "dropout": 0.0, "deep_supervision": 1},
                   "3f73e740051233d11d6556607c9b8bcf34b261c72afc6e913ef789f47e2b2fbc"),
    "attention-instance": ({"arch": "attention_unet", "base_channels": 4, "depth": 2,
                            "norm": "instance", "dropout": 0.1, "deep_supervision": 0},
                           "e1e595064749e5a1ff9c9fc8d10aa57e80f746244e284f5081732768579ff342"),
    "unet-none-softmax": ({"arch": "unet", "base_channels": 3, "depth": 2, "norm": "none",
                           "dropout": 0.0, "deep_supervision": 0, "output": "softmax"},
                          "49e4f104ebe4c4cefe39b3a6a3575c4fb2034c576e637121328252757977ec86"),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_2D))
def test_2d_initialisation_is_bit_identical_to_the_reference(name):
    import hashlib

    config, want = REFERENCE_2D[name]
    for dims in ({}, {"dims": 2}):
        torch.manual_seed(0)
        digest = hashlib.sha256()
        for key, value in build_model({**config, **dims}).state_dict().items():
            digest.update(key.encode())
            digest.update(value.numpy().tobytes())
        assert digest.hexdigest() == want


def test_dims_3_builds_3d_layers_and_other_dims_are_refused():
    model = small(dims=3)
    assert isinstance(model.head, torch.nn.Conv3d)
    assert isinstance(model.stem[1], torch.nn.BatchNorm3d)
    assert isinstance(small(dims=3, norm="instance").stem[1], torch.nn.InstanceNorm3d)
    with pytest.raises(BrainsegError, match=r"train\.model\.dims.*4"):
        small(dims=4)
