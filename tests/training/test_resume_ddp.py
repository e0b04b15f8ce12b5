"""`brainseg train` as a user runs it: killed and resumed, and data-parallel under torchrun."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from brainseg.tracking import read_run_info
from tests.training.conftest import train_paths, write_store

BIN = Path(sys.executable).parent


def command(root: Path, params: dict, out: str, *extra: str) -> list[str]:
    (root / f"{out}.yaml").write_text(yaml.safe_dump(params))
    paths = train_paths(root / out)
    return ["brainseg", "train", "--params", str(root / f"{out}.yaml"),
            "--slices-dir", str(root / "slices"), "--splits", str(root / "splits.csv"),
            "--model-out", str(paths["model_out"]), "--history-out", str(paths["history_out"]),
            "--run-info-out", str(paths["run_info_out"]), "--threads", "1",
            "--tracking-uri", f"sqlite:///{root / out / 'mlflow.db'}", *extra]


def env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.fixture
def bigger_store(tmp_path) -> Path:
    return write_store(tmp_path, {"S-0": "train", "S-1": "train", "S-2": "val"}, size=48)


def test_killed_training_resumes_to_the_same_weights_in_the_same_run(bigger_store, train_params):
    root = bigger_store
    train_params["train"].update(epochs=4, slices_per_epoch=96)
    run(command(root, train_params, "whole"), root)

    cmd = command(root, train_params, "killed")
    state = train_paths(root / "killed")["model_out"].parent / "train_state.pt"
    proc = subprocess.Popen(cmd, cwd=root, env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state.exists(), "the training ended before its first state was saved"
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] < 4, "killed too late: the training had finished"
    assert not train_paths(root / "killed")["run_info_out"].exists()

    run([*cmd, "--resume"], root)
    whole = torch.load(root / "whole" / "models" / "model.pt", weights_only=True)
    resumed = torch.load(root / "killed" / "models" / "model.pt", weights_only=True)
    assert whole["epoch"] == resumed["epoch"]
    assert all(torch.equal(whole["state_dict"][k], v) for k, v in resumed["state_dict"].items())
    info = read_run_info(train_paths(root / "killed")["run_info_out"])
    assert info["run_id"] == saved["run_id"]
    client = MlflowClient(f"sqlite:///{root / 'killed' / 'mlflow.db'}")
    steps = [m.step for m in client.get_metric_history(info["run_id"], "train_loss")]
    assert sorted(steps) == [1, 2, 3, 4]
    assert client.get_run(info["run_id"]).info.status == "FINISHED"
    assert len(client.search_runs([client.get_experiment_by_name(
        train_params["train"]["experiment"]).experiment_id])) == 1
    assert not state.exists()


def test_torchrun_two_processes_follow_the_single_process_loss(bigger_store, train_params):
    root = bigger_store
    train_params["train"].update(epochs=3, slices_per_epoch=64, batch_size=8)
    train_params["train"]["model"]["norm"] = "instance"  # no batch statistics across ranks
    run(command(root, train_params, "single"), root)
    run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", "-m",
         *command(root, train_params, "ddp")], root)
    single = pd.read_csv(root / "single" / "reports" / "history.csv")
    ddp = pd.read_csv(root / "ddp" / "reports" / "history.csv")
    assert len(single) == len(ddp) == 3
    # Same global batches and mean gradient; the soft Dice is computed per process batch,
    # so losses differ a little. Stated tolerance: 0.05 absolute per epoch.
    diff = (single["train_loss"] - ddp["train_loss"]).abs()
    assert diff.max() < 0.05, f"train loss single {single['train_loss'].tolist()} vs " \
        f"ddp {ddp['train_loss'].tolist()}"
    client = MlflowClient(f"sqlite:///{root / 'ddp' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(
        train_params["train"]["experiment"]).experiment_id])
    assert len(runs) == 1  # only rank 0 logs
    assert not list((root / "ddp").rglob(".tmp-*"))
