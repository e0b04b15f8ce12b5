"""2.5D input (`train.model.context_slices`): the stacking, its use in training and
prediction, the checkpoint that carries it, ONNX, and the params check."""

from __future__ import annotations

import copy

import nibabel as nib
import numpy as np
import pytest
import torch

from brainseg.data.extract import extract_subject
from brainseg.data.loading import load_subject
from brainseg.data.normalize import normalize_subject
from brainseg.data.preprocess import context_indices, stack_context
from brainseg.errors import BrainsegError
from brainseg.evaluation.export import run_export
from brainseg.evaluation.inference import (
    check_config,
    input_channels,
    load_model,
    model_context,
    predict_probabilities,
    prepare_volume,
)
from brainseg.evaluation.predict import run_predict
from brainseg.models.ensemble import build_network
from brainseg.params import validate_params
from brainseg.training.data import SliceDataset, build_augmentation, load_subject_inputs
from brainseg.training.train import run_train
from tests.conftest import write_subject
from tests.training.conftest import augment_cfg, train_paths, write_store


def ramp(s: int, m: int = 2) -> np.ndarray:
    """Slices (s, m, 1, 1) whose value is 10 * slice + modality."""
    return (10 * np.arange(s)[:, None] + np.arange(m)[None, :]).astype(np.float32)[..., None,
                                                                                    None]


def test_edges_repeat_the_first_and_last_slice():
    assert context_indices(range(4), 1).tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3],
                                                     [2, 3, 3]]
    assert context_indices([7, 8, 9], 2).tolist() == [[0, 0, 0, 1, 2], [0, 0, 1, 2, 2],
                                                      [0, 1, 2, 2, 2]]


def test_n_larger_than_the_depth_repeats_the_only_slices():
    assert context_indices([5], 3).tolist() == [[0] * 7]
    out = stack_context(ramp(2), 3)
    assert out.shape == (2, 2 * 7, 1, 1)
    assert out[0, :7, 0, 0].tolist() == [0, 0, 0, 0, 10, 10, 10]
    assert out[1, :7, 0, 0].tolist() == [0, 0, 0, 10, 10, 10, 10]


def test_channel_order_is_modality_major():
    """n = 1: t1[z-1], t1[z], t1[z+1], t1ce[z-1], t1ce[z], t1ce[z+1]."""
    out = stack_context(ramp(4), 1)
    assert out[2, :, 0, 0].tolist() == [10, 20, 30, 11, 21, 31]
    assert out[0, :, 0, 0].tolist() == [0, 0, 10, 1, 1, 11]
    assert out[3, :, 0, 0].tolist() == [20, 30, 30, 21, 31, 31]
    for k in range(4):
        assert np.array_equal(stack_context(ramp(4), 1, index=k), out[k])


def test_a_gap_in_the_kept_slices_is_an_edge():
    """Slices 10 11 | 13 14 (12 not kept): 11's upper neighbour is itself, not 13."""
    idx = context_indices([10, 11, 13, 14], 1)
    assert idx.tolist() == [[0, 0, 1], [0, 1, 1], [2, 2, 3], [2, 3, 3]]
    with pytest.raises(BrainsegError, match="3 slice positions for 4 slices"):
        stack_context(ramp(4), 1, z=[1, 2, 3])


def test_n_zero_is_the_identity():
    slices = ramp(5)
    assert stack_context(slices, 0) is slices
    assert np.array_equal(stack_context(slices, 0, index=3), slices[3])
    config = {"model": {}, "modalities": ["t1", "t1ce", "t2", "flair"]}
    assert model_context(config) == 0 and input_channels(config) == 4  # an older checkpoint


def test_training_and_prediction_stack_the_same_slices(tmp_path, params):
    """The normalize stage's store stacked for training = `prepare_volume` of the raw scan."""
    write_subject(tmp_path / "raw", "TINY-000", shape=(32, 32, 14))
    extract_subject("TINY-000", tmp_path / "raw", tmp_path / "ext", params["extract"])
    normalize_subject("TINY-000", tmp_path / "ext", tmp_path / "norm", params["normalize"])
    config = {"model": {"context_slices": 2}, "extract": params["extract"],
              "normalize": params["normalize"]}
    image = load_subject(tmp_path / "raw" / "TINY-000").image
    want, geo = prepare_volume(config, image)
    got, _ = load_subject_inputs(tmp_path / "norm" / "TINY-000", 2)
    assert got.shape == (len(geo.z), 4 * 5, *got.shape[2:])
    assert np.array_equal(got, want)
    dataset = SliceDataset([tmp_path / "norm" / "TINY-000"], context_slices=2)
    assert torch.equal(dataset[1][0], torch.from_numpy(want[1].astype(np.float32)))


def test_augmentation_moves_every_context_channel_alike(tmp_path):
    """Every slice of the store equal: each modality's 3 context channels stay equal under
    flip, affine, elastic, gamma, brightness/contrast and blur (noise is per channel)."""
    root = write_store(tmp_path, {"S-0": "train"}, n_slices=6, size=32)
    folder = root / "slices" / "S-0"
    image = np.load(folder / "image.npy")
    np.save(folder / "image.npy", np.repeat(image[2:3], 6, axis=0))
    on = {k: {"p": 1.0} for k in ("flip", "affine", "elastic", "gamma",
                                  "brightness_contrast", "blur")}
    dataset = SliceDataset([folder], build_augmentation(augment_cfg(**on), 0, context_slices=1),
                           context_slices=1)
    plain = SliceDataset([folder], context_slices=1)
    x = dataset[(2, 7)][0].numpy().reshape(4, 3, 32, 32)
    assert not np.array_equal(x, plain[2][0].numpy().reshape(4, 3, 32, 32))
    for j in (0, 2):
        assert np.array_equal(x[:, j], x[:, 1])


def test_negative_context_slices_are_refused(params):
    params = copy.deepcopy(params)
    params["train"]["model"]["context_slices"] = -1
    with pytest.raises(BrainsegError, match=r"train\.model\.context_slices"):
        validate_params(params)


@pytest.fixture(scope="module")
def trained_n1(tmp_path_factory):
    """A tiny training with context_slices = 1 (one epoch) and its ONNX export."""
    import yaml

    from tests.conftest import REPO

    root = tmp_path_factory.mktemp("ctx")
    write_store(root, {"S-0": "train", "S-1": "train", "S-2": "val"})
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["train"].update(epochs=1, batch_size=8, slices_per_epoch=16)
    params["train"]["model"].update(base_channels=4, depth=2, context_slices=1)
    run_train(params=validate_params(params), **train_paths(root),
              tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    ckpt = root / "models" / "model.pt"
    return root, ckpt, run_export(model=ckpt, out=root / "model.onnx")


def test_the_checkpoint_carries_the_context_and_predict_needs_nothing_else(trained_n1,
                                                                         tmp_path):
    from mlflow.tracking import MlflowClient

    from brainseg.tracking import read_run_info

    root, ckpt, _ = trained_n1
    config = torch.load(ckpt, map_location="cpu", weights_only=True)["config"]
    assert config["model"]["context_slices"] == 1 and config["model"]["in_channels"] == 12
    run = MlflowClient(f"sqlite:///{root / 'mlflow.db'}").get_run(
        read_run_info(root / "models" / "run.json")["run_id"])
    assert run.data.params["train.model.context_slices"] == "1"
    folder = write_subject(tmp_path / "in", "NEW-001", seed=3)
    out = run_predict(model=str(ckpt), inputs=[folder], output=tmp_path / "pred.nii.gz")[0]
    pred, scan = nib.load(out), nib.load(folder / "NEW-001_t1.nii.gz")
    assert pred.shape == scan.shape and np.allclose(pred.affine, scan.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}


def test_onnx_and_checkpoint_agree_with_context(trained_n1, tmp_path):
    _, ckpt, graph = trained_n1
    folder = write_subject(tmp_path / "in", "NEW-002", seed=4)
    image = load_subject(folder).image
    probs = [predict_probabilities(*load_model(str(m)), image, 8) for m in (ckpt, graph)]
    assert np.abs(probs[0] - probs[1]).max() < 1e-4
    labels = [np.asarray(nib.load(run_predict(model=str(m), inputs=[folder],
                                              output=tmp_path / f"{m.suffix[1:]}.nii.gz")[0]
                                  ).dataobj) for m in (ckpt, graph)]
    near = np.abs(probs[0] - 0.5).min(axis=0) < 1e-3  # a float difference may flip these
    assert np.array_equal(labels[0][~near], labels[1][~near])


def context_config(n: int, folds: int = 0) -> dict:
    model = {"arch": "unet", "base_channels": 4, "depth": 2, "norm": "batch", "dropout": 0.0,
             "output": "regions", "in_channels": 4 * (2 * n + 1), "out_channels": 3,
             "context_slices": n}
    config = {"model": model, "extract": {"image_size": 32, "margin": 2, "min_brain_pixels": 8},
              "normalize": {"clip_percentiles": [0.5, 99.5]},
              "modalities": ["t1", "t1ce", "t2", "flair"], "regions": ["WT", "TC", "ET"]}
    return {**config, "ensemble": {"folds": list(range(folds))}} if folds else config


def test_a_fold_ensemble_takes_the_stacked_input(tmp_path):
    torch.manual_seed(0)
    config = context_config(2, folds=2)
    check_config(config, "ensemble")
    model = build_network(config).eval()
    image = load_subject(write_subject(tmp_path, "E-001", seed=2)).image
    probs = predict_probabilities(model, config, image, 8)
    assert probs.shape == (3, 32, 32, 12) and np.isfinite(probs).all()


def test_in_channels_that_do_not_fit_the_context_are_refused():
    config = context_config(1)
    config["model"]["in_channels"] = 4
    with pytest.raises(BrainsegError, match=r"m\.pt: model\.in_channels 4 .*context_slices 1 "
                                            r"\(12 channels\)"):
        check_config(config, "m.pt")
    config["model"]["context_slices"] = -1
    with pytest.raises(BrainsegError, match=r"m\.pt: model config: context_slices should be an "
                                            r"integer >= 0, got -1"):
        check_config(config, "m.pt")
