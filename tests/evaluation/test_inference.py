from __future__ import annotations

import numpy as np
import torch

from brainseg.evaluation.inference import load_checkpoint, predict_volume
from brainseg.io.nifti import load_subject
from brainseg.models.unet import build_model
from tests.conftest import write_subject

MODEL = {"base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0, "in_channels": 4,
         "out_channels": 3}


def save_checkpoint(path, image_size=32):
    torch.manual_seed(0)
    config = {"model": MODEL,
              "extract": {"image_size": image_size, "margin": 2, "min_brain_pixels": 4},
              "normalize": {"clip_percentiles": [0.5, 99.5]}, "regions": ["WT", "TC", "ET"]}
    torch.save({"state_dict": build_model(MODEL).state_dict(), "config": config}, path)


def test_checkpoint_round_trip_with_weights_only(tmp_path):
    save_checkpoint(tmp_path / "m.pt")
    model, config = load_checkpoint(tmp_path / "m.pt")
    assert not model.training and config["extract"]["image_size"] == 32


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
