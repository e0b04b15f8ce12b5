"""SIGTERM (Snakemake, Slurm, `kill`) and Ctrl-C stop a stage cleanly.

One message, exit status 143 (SIGTERM) or 130 (SIGINT), no temporary file left, and
every output already there complete; the pool's worker processes stopped too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, wait_for
from tests.training.conftest import write_store
from tests.training.test_resume_ddp import command, env

SIGNALS = {"SIGTERM": (signal.SIGTERM, 143, "stopped by SIGTERM"),
           "SIGINT": (signal.SIGINT, 130, "stopped by SIGINT (Ctrl-C)")}


def leftovers(root: Path) -> list[str]:
    """Temporary files and folders of atomic writes under `root`."""
    return sorted(p.name for p in root.rglob("*") if ".tmp-" in p.name)


def children(pid: int) -> list[int]:
    found = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in found.read_text().split()] if found.exists() else []


def stopped(process: subprocess.Popen, sig: int) -> tuple[int, list[str]]:
    """Send `sig`; the exit status and the ERROR lines (the status is checked here, with the
    end of the standard error in the message when it is not a signal's)."""
    process.send_signal(sig)
    _, err = process.communicate(timeout=120)
    code = next(c for s, c, _ in SIGNALS.values() if s == sig)
    assert process.returncode == code, f"exit {process.returncode}, not {code}:\n{err[-4000:]}"
    return process.returncode, [line for line in err.splitlines() if " ERROR " in line]


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_a_stopped_training_leaves_its_state_and_no_model(name, tmp_path):
    sig, code, message = SIGNALS[name]
    root = write_store(tmp_path, {"S-0": "train", "S-1": "val"})
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["train"].update(epochs=200, batch_size=8, slices_per_epoch=32)
    cmd = command(root, params, "run")
    process = subprocess.Popen(cmd, cwd=root, env=env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    state = root / "run" / "models" / "train_state.pt"
    wait_for(state.exists, 300, "the first epoch's state file")
    returncode, errors = stopped(process, sig)
    assert returncode == code
    assert len(errors) == 1 and message in errors[0], errors
    assert not (root / "run" / "models" / "model.pt").exists()
    assert state.exists()  # `--resume` goes on from it
    assert leftovers(root) == []


def start_download(tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`brainseg download` of 60 subjects with 2 workers, once its first subject is there."""
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["download"]["n_subjects"] = 60
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "raw"
    process = subprocess.Popen([sys.executable, "-m", "brainseg", "download", "--params",
                                "params.yaml", "--out-dir", str(out), "--jobs", "2"],
                               cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    wait_for(lambda: out.is_dir() and any(p.name.startswith("SMOKE") for p in out.iterdir()),
             300, "the first subject")
    return process, out


@pytest.mark.parametrize("name", sorted(SIGNALS))
def test_a_stopped_download_leaves_complete_subjects_and_no_worker(name, tmp_path):
    sig, code, message = SIGNALS[name]
    process, out = start_download(tmp_path)
    workers = children(process.pid)
    returncode, errors = stopped(process, sig)
    assert returncode == code
    assert len(errors) == 1 and message in errors[0], errors
    assert leftovers(tmp_path) == []
    done = [p for p in out.iterdir() if p.is_dir()]
    assert 0 < len(done) < 60 and not (out / "manifest.csv").exists()
    for folder in done:
        assert len(list(folder.glob("*.nii.gz"))) == 5, folder
    for pid in workers:
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or
                 Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 30,
                 f"worker {pid} to end")


def test_a_killed_download_leaves_no_orphan_writing(tmp_path):
    """SIGKILL of the main process (a lost node, a fault injection): its workers get SIGTERM
    from Linux, end, and take none of the subjects queued for them; nothing is written
    after the kill but the removal of the temporary folders being written."""
    process, out = start_download(tmp_path)
    workers = children(process.pid)
    process.kill()
    process.communicate(timeout=60)
    done_at_kill = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    for pid in workers:
        wait_for(lambda pid=pid: not os.path.exists(f"/proc/{pid}") or
                 Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z", 30,
                 f"worker {pid} to end")
    done = {p.name for p in out.iterdir() if not p.name.startswith(".")}
    assert done == done_at_kill, sorted(done - done_at_kill)
    assert leftovers(tmp_path) == []
