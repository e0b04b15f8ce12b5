from __future__ import annotations

import numpy as np
import pytest
import torch

from brainseg.data.loading import load_subject
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_checkpoint, predict_probabilities, predict_volume
from brainseg.models.logits import FLIP_AXIS, flip_lr, predict_slices, predict_slices_with_tta
from brainseg.models.unet import build_model
from tests.conftest import write_subject

MODEL = {"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0, "output": "regions",
         "in_channels": 4, "out_channels": 3}


def save_checkpoint(path, image_size=32):
    torch.manual_seed(0)
    config = {"model": MODEL,
              "extract": {"image_size": image_size, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]}}
    torch.save({"state_dict": build_model(MODEL).state_dict(), "config": config}, path)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "m.pt")
    model, config = load_checkpoint(tmp_path / "m.pt")
    assert not model.training and config["extract"]["image_size"] == 32


def test_a_checkpoint_config_without_the_output_mode_is_refused_by_name(tmp_path):
    save_checkpoint(tmp_path / "m.pt")
    ckpt = torch.load(tmp_path / "m.pt", weights_only=True)
    del ckpt["config"]["model"]["output"]
    torch.save(ckpt, tmp_path / "old.pt")
    with pytest.raises(BrainsegError, match=r"old\.pt: model config lacks model\.output"):
        load_checkpoint(tmp_path / "old.pt")


def test_predict_volume_returns_labels_on_the_input_grid(tmp_path):
    save_checkpoint(tmp_path / "m.pt")
    model, config = load_checkpoint(tmp_path / "m.pt")
    subject = load_subject(write_subject(tmp_path, "S-001"))
    labels = predict_volume(model, config, subject.image, 0.5, 8)
    assert labels.shape == subject.image.shape[1:] and labels.dtype == np.uint8
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    assert not labels[subject.image[0] == 0].any(), "no tumour outside the cropped brain box"


def test_predict_volume_on_the_real_case(tmp_path, real_case):
    save_checkpoint(tmp_path / "m.pt", image_size=64)
    model, config = load_checkpoint(tmp_path / "m.pt")
    subject = load_subject(real_case)
    labels = predict_volume(model, config, subject.image, 0.5, 32)
    assert labels.shape == (240, 240, 155)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}


def test_flip_tta_of_a_mirror_symmetric_input_is_symmetric():
    """For any model, TTA averages f(x) with flip(f(flip(x))): for x = flip(x) the result
    is its own mirror image, while the plain prediction of this U-Net is not."""
    torch.manual_seed(0)
    model = build_model(MODEL).eval()
    half = np.random.default_rng(0).normal(size=(3, 4, 8, 16)).astype(np.float32)
    slices = np.concatenate([half, flip_lr(half)], axis=FLIP_AXIS)  # (3, 4, 16, 16)
    plain, tta = predict_slices_with_tta(model, slices, batch_size=2)
    assert not np.allclose(plain, flip_lr(plain), atol=1e-4)
    np.testing.assert_allclose(tta, flip_lr(tta), atol=1e-5)
    np.testing.assert_array_equal(predict_slices(model, slices, 2, flip_tta=True), tta)


def test_flip_tta_of_a_pointwise_model_changes_nothing(tmp_path):
    """A pointwise (1x1) model commutes with any flip: TTA must give back the plain
    probabilities on the volume grid (it would not if the mirrored prediction were not
    mirrored back)."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 3, kernel_size=1)
    config = {"model": {"output": "regions"},
              "extract": {"image_size": 32, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]}}
    subject = load_subject(write_subject(tmp_path, "S-001"))
    plain = predict_probabilities(model, config, subject.image, 8)
    tta = predict_probabilities(model, config, subject.image, 8, flip_tta=True)
    assert plain.shape == (3, *subject.image.shape[1:]) and plain.dtype == np.float32
    assert np.abs(plain - 0.5).max() > 0.05, "the check needs a non-constant prediction"
    np.testing.assert_allclose(tta, plain, atol=1e-6)


def test_softmax_output_gives_nested_region_probabilities(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Conv2d(4, 4, kernel_size=1)
    config = {"model": {"output": "softmax"},
              "extract": {"image_size": 32, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]}}
    subject = load_subject(write_subject(tmp_path, "S-001"))
    probs = predict_probabilities(model, config, subject.image, 8)
    assert probs.shape == (3, *subject.image.shape[1:])
    assert (probs[2] <= probs[1] + 1e-6).all() and (probs[1] <= probs[0] + 1e-6).all()
    labels = predict_volume(model, config, subject.image, 0.5, 8)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
