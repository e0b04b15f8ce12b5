"""Training in-process on a small store: determinism, early stopping, MLflow model, bad input."""

from __future__ import annotations

import copy
import subprocess
import sys
import zipfile

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from brainseg.errors import BrainsegError
from brainseg.params import default_params
from brainseg.tracking import read_run_info
from brainseg.training.state import fingerprint, save_state
from brainseg.training.train import run_train
from tests.training.conftest import train_paths


def train(root, params, **kwargs):
    uri = f"sqlite:///{root / 'mlflow.db'}"
    best = run_train(params=params, **train_paths(root), tracking_uri=uri, **kwargs)
    return best, uri


def weights(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_two_runs_give_bit_identical_weights(store, train_params, tmp_path, monkeypatch):
    train_params["train"]["model"]["arch"] = "attention_unet"
    train_params["train"]["model"]["deep_supervision"] = 1
    train(store, train_params)
    first = weights(store / "models" / "model.pt")
    history = pd.read_csv(store / "reports" / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    assert history["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)  # poly decays to 0
    assert not (store / "models" / "train_state.pt").exists()  # removed once complete
    (store / "models" / "model.pt").unlink()
    train(store, copy.deepcopy(train_params))
    second = weights(store / "models" / "model.pt")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert history.equals(pd.read_csv(store / "reports" / "history.csv"))


def test_two_processes_write_the_same_checkpoint_and_history_bytes(store, train_params,
                                                                   tmp_path):
    """Two `brainseg train` processes: equal bytes, so DVC sees no change (no pid, no timing)."""
    train_params["train"]["epochs"] = 2
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(train_params))
    outputs = []
    for k in range(2):
        out = tmp_path / f"run-{k}"
        subprocess.run(
            [sys.executable, "-m", "brainseg", "-q", "train", "--params", str(params),
             "--slices-dir", str(store / "slices"), "--splits", str(store / "splits.csv"),
             "--model-out", str(out / "model.pt"), "--history-out", str(out / "history.csv"),
             "--run-info-out", str(out / "run.json"), "--threads", "1",
             "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"],
            check=True, cwd=tmp_path)
        outputs.append(out)
    first, second = outputs
    assert (first / "model.pt").read_bytes() == (second / "model.pt").read_bytes()
    assert (first / "history.csv").read_bytes() == (second / "history.csv").read_bytes()
    assert "slices_per_s" not in (first / "history.csv").read_text()
    with zipfile.ZipFile(first / "model.pt") as archive:  # no temporary name inside
        assert {name.split("/")[0] for name in archive.namelist()} == {"archive"}
    run = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(
        read_run_info(first / "run.json")["run_id"])
    assert run.data.metrics["slices_per_s"] > 0  # the timing goes to MLflow instead


def test_runs_with_different_params_get_names_that_say_so(store, monkeypatch):
    params = default_params()
    params["train"]["epochs"] = 1
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    _, uri = train(store, params)
    first = read_run_info(store / "models" / "run.json")["run_id"]
    changed = copy.deepcopy(params)
    changed["train"]["optimizer"]["lr"] = 0.0005
    monkeypatch.setenv("DVC_EXP_NAME", "lumpy-bush")  # as `dvc exp run` sets it
    train(store, changed)
    second = read_run_info(store / "models" / "run.json")["run_id"]
    client = MlflowClient(uri)
    names = [client.get_run(run).info.run_name for run in (first, second)]
    assert names == ["train: epochs=1", "lumpy-bush train: epochs=1, lr=0.0005"]
    tags = client.get_run(second).data.tags
    assert "lr=0.0005" in tags["params_changed"] and tags["dvc_experiment"] == "lumpy-bush"


def test_softmax_bf16_and_early_stopping(store, train_params):
    cfg = train_params["train"]
    cfg.update(epochs=6, precision="bf16")
    cfg["model"]["output"] = "softmax"
    cfg["optimizer"]["lr"] = 1e-9  # nothing improves: patience 2 stops after epoch 3
    cfg["early_stopping"].update(patience=2, min_delta=0.5)
    best, uri = train(store, train_params)
    assert best["epoch"] == 1
    assert len(pd.read_csv(store / "reports" / "history.csv")) == 3
    ckpt = torch.load(store / "models" / "model.pt", weights_only=True)
    assert ckpt["config"]["model"]["out_channels"] == 4 and ckpt["epoch"] == 1
    run = MlflowClient(uri).get_run(read_run_info(store / "models" / "run.json")["run_id"])
    assert run.data.metrics["epochs_run"] == 3


def test_validating_every_other_epoch_trains_the_same_weights(store, train_params, tmp_path):
    from brainseg.reporting.plots import plot_learning_curves

    train_params["train"].update(epochs=3, checkpoint="last")
    train(store, train_params)
    every = weights(store / "models" / "model.pt")
    full = pd.read_csv(store / "reports" / "history.csv")
    train_params["train"]["val_every"] = 2
    _, uri = train(store, train_params)
    assert all(torch.equal(every[k], v) for k, v in weights(store / "models" / "model.pt").items())
    history = pd.read_csv(store / "reports" / "history.csv")
    assert history["val_dice_mean"].isna().tolist() == [True, False, False]  # 2, and the last
    assert history.loc[1:].equals(full.loc[1:])
    run_id = read_run_info(store / "models" / "run.json")["run_id"]
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run_id, "val_dice_mean")]
    assert sorted(steps) == [2, 3]
    plot_learning_curves(history, tmp_path / "curves.png")  # the gaps do not break the figure
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_model_is_registered_and_loads_by_name_and_version(store, train_params, monkeypatch):
    monkeypatch.setenv("DVC_EXP_NAME", "sly-pika")
    train_params["train"]["epochs"] = 1
    _, uri = train(store, train_params)
    info = read_run_info(store / "models" / "run.json")
    assert info["model_name"] == train_params["train"]["registered_model"]
    client = MlflowClient(uri)
    run = client.get_run(info["run_id"])
    assert run.data.tags["dvc_experiment"] == "sly-pika"
    assert run.data.params["train.optimizer.lr"] == str(train_params["train"]["optimizer"]["lr"])
    version = client.get_model_version(info["model_name"], info["model_version"])
    assert version.run_id == info["run_id"]
    mlflow.set_tracking_uri(uri)
    loaded = mlflow.pytorch.load_model(f"models:/{info['model_name']}/{info['model_version']}")
    assert loaded.brainseg_config["model"]["base_channels"] == 4
    x = torch.from_numpy(np.load(store / "slices" / "S-3" / "image.npy")[:5].astype(np.float32))
    ckpt_model_out = loaded(x)
    from brainseg.evaluation.inference import load_checkpoint

    reference, _ = load_checkpoint(store / "models" / "model.pt")
    with torch.no_grad():
        assert torch.allclose(ckpt_model_out, reference(x), atol=1e-5)


def test_resume_refuses_missing_corrupt_and_changed_state(store, train_params):
    with pytest.raises(BrainsegError, match="no training state"):
        train(store, train_params, resume=True)
    state = store / "models" / "train_state.pt"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"not a checkpoint")
    with pytest.raises(BrainsegError, match="cannot read the training state"):
        train(store, train_params, resume=True)
    save_state(state, fingerprint=fingerprint(train_params), epoch=1)
    changed = copy.deepcopy(train_params)
    changed["train"]["model"]["arch"] = "attention_unet"
    with pytest.raises(BrainsegError, match=r"train\.model\.arch"):
        train(store, changed, resume=True)
    assert not (store / "models" / "model.pt").exists()


def test_fp16_on_cpu_is_refused(store, train_params):
    train_params["train"]["precision"] = "fp16"
    with pytest.raises(BrainsegError, match="fp16 needs a CUDA device"):
        train(store, train_params)
