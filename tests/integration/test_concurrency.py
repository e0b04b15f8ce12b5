"""Two of a kind at once: runs, trainings and predictions that share a folder or a store.

Each ends in one clear refusal or in two correct results, never in a corrupt file:
- two `snakemake` runs in one working copy: Snakemake's lock refuses the second;
- `snakemake` and `dvc repro` in one working copy: whichever comes second is refused
  (brainseg.runlock) before it removes or writes anything, the first completes;
- two trainings logging to one SQLite MLflow store: two complete runs;
- two `brainseg predict` writing one output path: the file is one of the two (equal)
  results, whole, and no temporary file is left.
Nothing is left running afterwards.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from brainseg.runlock import LOCK_NAME
from tests.conftest import REPO, digest, wait_for, write_subject
from tests.evaluation.test_inference import save_checkpoint
from tests.integration.conftest import copy_repo, tool_env
from tests.training.conftest import write_store
from tests.training.test_resume_ddp import command, env

pytestmark = pytest.mark.integration


def stop(process: subprocess.Popen) -> None:
    """SIGINT (Ctrl-C) and wait; SIGKILL if it has not ended in 60 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


def test_a_second_snakemake_in_the_same_copy_is_refused_by_the_lock(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    first = subprocess.Popen(["snakemake", "--cores", "1"], cwd=repo, env=tool_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        locks = repo / ".snakemake" / "locks"
        wait_for(lambda: locks.is_dir() and any(locks.iterdir()), 120, "the first run's lock")
        second = subprocess.run(["snakemake", "--cores", "1"], cwd=repo, env=tool_env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert "Directory cannot be locked" in second.stdout + second.stderr
        assert first.poll() is None, "the refused run stopped the first one"
    finally:
        stop(first)
    assert first.returncode is not None


def held(path: Path) -> bool:
    """Whether some process holds a flock on `path` (shared or exclusive)."""
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_snakemake_then_dvc_repro_in_one_copy_the_second_is_refused(snakemake_repo, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    first = subprocess.Popen(["snakemake", "--cores", "1", "--until", "download"], cwd=repo,
                             env=tool_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: held(repo / LOCK_NAME), 120, "Snakemake's runner lock")
        second = subprocess.run(["dvc", "repro"], cwd=repo, env=tool_env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        assert "Unable to acquire lock" in second.stdout + second.stderr
        _, err = first.communicate(timeout=600)
    finally:
        stop(first)
    assert first.returncode == 0, err
    assert digest(repo / "data" / "raw") == digest(snakemake_repo / "data" / "raw")
    assert not held(repo / LOCK_NAME) and not held(repo / ".dvc" / "tmp" / "lock")


def test_dvc_repro_then_snakemake_in_one_copy_the_second_is_refused(snakemake_repo, tmp_path):
    repo = copy_repo(tmp_path / "repo")
    first = subprocess.Popen(["dvc", "repro", "download"], cwd=repo, env=tool_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: held(repo / LOCK_NAME), 120, "the DVC stage's runner lock")
        second = subprocess.run(["snakemake", "--cores", "1"], cwd=repo, env=tool_env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode != 0
        text = second.stdout + second.stderr
        assert "`dvc repro` is running in this working copy" in text, text
        out, _ = first.communicate(timeout=600)
    finally:
        stop(first)
    assert first.returncode == 0, out
    assert digest(repo / "data" / "raw") == digest(snakemake_repo / "data" / "raw")
    assert not held(repo / LOCK_NAME)


def test_two_trainings_logging_to_one_sqlite_store_give_two_complete_runs(tmp_path):
    root = write_store(tmp_path, {"S-0": "train", "S-1": "val"})
    train_params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    train_params["train"].update(epochs=2, batch_size=8, slices_per_epoch=32,
                                 experiment="shared", val_every=1)
    train_params["train"]["model"].update(base_channels=4, depth=2)
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    commands = []
    for name in ("a", "b"):
        cmd = command(root, train_params, name)
        cmd[cmd.index("--tracking-uri") + 1] = uri
        commands.append(cmd)
    # the store is created once, as `snakemake`'s onstart does, before the two start
    subprocess.run(["brainseg", "init-tracking", "--params", str(root / "a.yaml"),
                    "--tracking-uri", uri], env=env(), check=True, capture_output=True,
                   timeout=300)
    procs = [subprocess.Popen(c, cwd=root, env=env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for c in commands]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(e[-3000:] for e in errors)
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("shared").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert sorted(steps) == [1, 2]


def test_two_predictions_of_one_output_path_leave_one_whole_file(tmp_path):
    folder = write_subject(tmp_path / "in", "P-001")
    save_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "out" / "P-001_seg.nii.gz"
    cmd = [sys.executable, "-m", "brainseg", "predict", "--model", "m.pt", "--input",
           str(folder), "--output", str(out), "--threads", "1"]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(errors)
    alone = tmp_path / "alone.nii.gz"
    subprocess.run([*cmd[:-4], "--output", str(alone), "--threads", "1"], cwd=tmp_path,
                   check=True, capture_output=True, timeout=300)
    assert digest(out) == digest(alone)
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]
