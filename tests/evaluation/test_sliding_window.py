"""Sliding-window inference of 3D models: blending, padding, mirror TTA, and the 3D checkpoint
through `load_checkpoint` and `predict_probabilities`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_checkpoint, predict_probabilities
from brainseg.evaluation.sliding_window import (
    MIRRORS,
    gaussian_weights,
    predict_volume_probabilities,
    predict_volume_tta,
    sliding_window_logits,
    window_starts,
)
from brainseg.models.unet import build_model
from tests.conftest import write_subject

MODEL_3D = {"dims": 3, "base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0,
            "output": "regions", "in_channels": 4, "out_channels": 3, "deep_supervision": 0}


class Constant(nn.Module):
    """Logits 2.0 everywhere, whatever the input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 3, *x.shape[2:]), 2.0)


def pointwise() -> nn.Module:
    """A 1x1x1 convolution: fully convolutional, translation- and flip-equivariant."""
    torch.manual_seed(0)
    return nn.Conv3d(4, 3, 1).eval()


def volume(shape=(4, 20, 23, 17), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_gaussian_weights_are_positive_symmetric_and_peak_at_the_centre():
    w = gaussian_weights((8, 9, 16))
    assert w.shape == (8, 9, 16) and w.dtype == np.float32
    assert (w > 0).all() and w.max() == pytest.approx(1.0)
    for axis in range(3):
        assert np.array_equal(w, np.flip(w, axis))
    assert w[4, 4, 8] > w[0, 4, 8] and w[4, 4, 8] > w[4, 4, 0]


def test_window_starts_cover_the_axis_with_the_overlap():
    assert window_starts(64, 64, 0.5) == [0] and window_starts(10, 64, 0.5) == [0]
    assert window_starts(128, 64, 0.5) == [0, 32, 64]
    starts = window_starts(140, 64, 0.5)
    assert starts[0] == 0 and starts[-1] == 140 - 64
    assert max(np.diff(starts)) <= 32
    assert window_starts(140, 64, 0.0) == [0, 38, 76]
    with pytest.raises(BrainsegError, match="overlap"):
        window_starts(100, 64, 1.0)


def test_a_constant_model_gives_a_constant_output():
    out = sliding_window_logits(Constant(), volume(), (8, 8, 8), 0.5)
    assert out.shape == (3, 20, 23, 17)
    assert torch.allclose(out, torch.full_like(out, 2.0), atol=1e-6)


def test_a_volume_smaller_than_the_window_is_padded_and_cropped_back():
    model = pointwise()
    x = volume((4, 5, 7, 3))
    out = sliding_window_logits(model, x, (8, 8, 8), 0.5)
    with torch.no_grad():
        want = model(torch.from_numpy(x)[None])[0]
    assert out.shape == (3, 5, 7, 3)
    assert torch.allclose(out, want, atol=1e-5)


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_overlapping_windows_of_a_pointwise_model_equal_the_full_forward_pass(overlap):
    model = pointwise()
    x = volume()
    with torch.no_grad():
        want = model(torch.from_numpy(x)[None])[0]
    got = sliding_window_logits(model, x, (8, 8, 8), overlap)
    assert torch.allclose(got, want, atol=1e-5)


def test_a_window_covering_the_volume_is_one_forward_pass_of_a_3d_unet():
    torch.manual_seed(0)
    model = build_model(MODEL_3D).eval()
    x = volume((4, 12, 16, 20))
    with torch.no_grad():
        want = model(torch.from_numpy(x)[None])[0]
    got = sliding_window_logits(model, x, (12, 16, 20), 0.5)
    assert torch.allclose(got, want, atol=1e-5)


def test_mirror_tta_of_a_flip_equivariant_model_equals_the_plain_prediction():
    assert len(MIRRORS) == 8 and len(set(MIRRORS)) == 8
    plain, tta = predict_volume_tta(pointwise(), volume(), (8, 8, 8), 0.5, "regions")
    assert plain.shape == (3, 20, 23, 17)
    assert np.allclose(plain, tta, atol=1e-6)
    # a model that is not flip-equivariant is changed by it
    torch.manual_seed(1)
    unet = build_model(MODEL_3D).eval()
    p2, t2 = predict_volume_tta(unet, volume(), (8, 8, 8), 0.5, "regions")
    assert not np.allclose(p2, t2, atol=1e-4)
    single = predict_volume_probabilities(unet, volume(), (8, 8, 8), 0.5, "regions",
                                          mirror_tta=True)
    assert np.allclose(single, t2, atol=1e-6)


@pytest.mark.parametrize(("depth", "shape"), [(1, (5, 7, 9)), (2, (13, 16, 11)),
                                              (3, (9, 33, 17))])
def test_3d_unet_keeps_odd_sizes(depth, shape):
    for arch, ds in [("unet", 0), ("attention_unet", 0), ("unet", depth - 1)]:
        model = build_model({**MODEL_3D, "arch": arch, "depth": depth, "norm": "instance",
                             "deep_supervision": ds})
        out = model(torch.randn(1, 4, *shape))
        out = out if isinstance(out, torch.Tensor) else out[0]
        assert out.shape == (1, 3, *shape)


def test_3d_unet_refuses_2d_input_naming_the_shape():
    with pytest.raises(BrainsegError, match=r"3D U-Net takes .*\(1, 4, 8, 8\)"):
        build_model(MODEL_3D)(torch.randn(1, 4, 8, 8))


def save_checkpoint_3d(path, image_size=32):
    torch.manual_seed(0)
    config = {"model": MODEL_3D,
              "extract": {"image_size": image_size, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]},
              "patch": {"size": [8, 16, 16], "overlap": 0.5}}
    model = build_model(MODEL_3D)
    model.train()
    model(torch.randn(2, 4, 8, 16, 16))  # running statistics other than the initial ones
    torch.save({"state_dict": model.eval().state_dict(), "config": config}, path)
    return model


def test_3d_checkpoint_round_trip_and_prediction_on_the_volume_grid(tmp_path):
    original = save_checkpoint_3d(tmp_path / "m.pt")
    model, config = load_checkpoint(tmp_path / "m.pt")
    x = torch.randn(1, 4, 8, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), original(x), atol=1e-5)  # BatchNorm3d folded
    subject = write_subject(tmp_path / "raw", "S", shape=(30, 28, 14))
    from brainseg.data.loading import load_subject

    image = load_subject(subject).image
    probs = predict_probabilities(model, config, image, batch_size=4)
    assert probs.shape == (3, 30, 28, 14) and probs.dtype == np.float32
    assert np.isfinite(probs).all() and probs.max() > 0
    tta = predict_probabilities(model, config, image, batch_size=4, flip_tta=True)
    assert tta.shape == probs.shape and not np.allclose(tta, probs)


def test_a_3d_config_without_its_window_is_refused(tmp_path):
    save_checkpoint_3d(tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    del ckpt["config"]["patch"]
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(BrainsegError, match=r"bad\.pt: .*patch\.size"):
        load_checkpoint(tmp_path / "bad.pt")
