"""A disk that fills up while a stage writes: one message, nothing half-written, and the
rerun after space is freed gives the bytes of a run on a roomy disk.

The small disk is a tmpfs mounted by the test (root), nearly filled by one file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, digest, write_subject
from tests.training.conftest import write_store
from tests.training.test_resume_ddp import command, env

pytestmark = pytest.mark.integration
SIZE = 1 << 20  # the small disk: 1 MiB
ROOM = 8 << 10  # what the filler leaves free: 8 KiB


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 1 MiB tmpfs at tmp_path/small, all but 8 KiB taken by `filler`; unmounted after."""
    if os.geteuid() != 0:
        reason = "mounting a small tmpfs needs root"
        if os.environ.get("CI") == "true":
            pytest.fail(f"in CI the disk-full tests must run: {reason}")
        pytest.skip(reason)
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)],
                   check=True, capture_output=True)
    try:
        (mount / "filler").write_bytes(bytes(SIZE - ROOM))
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True, capture_output=True)


def brainseg(*args: str, cwd: Path, environ: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainseg", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=600)


def one_error(result: subprocess.CompletedProcess) -> str:
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert result.returncode == 1 and len(errors) == 1, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    return errors[0]


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_extract_on_a_full_disk_then_after_freeing_space(small_disk, tmp_path):
    write_subject(tmp_path / "raw", "S-001")
    (tmp_path / "params.yaml").write_text((REPO / "tests" / "params-smoke.yaml").read_text())
    args = ("extract", "--params", "params.yaml", "--raw-dir", "raw", "--subject", "S-001")
    error = one_error(brainseg(*args, "--out-dir", str(small_disk / "ext"), cwd=tmp_path))
    assert "no space left on the device" in error and "free some space and rerun" in error
    assert files(small_disk / "ext") == {}  # no subject folder, no temporary one
    (small_disk / "filler").unlink()
    assert brainseg(*args, "--out-dir", str(small_disk / "ext"), cwd=tmp_path).returncode == 0
    assert brainseg(*args, "--out-dir", "roomy", cwd=tmp_path).returncode == 0
    assert files(small_disk / "ext") == files(tmp_path / "roomy") != {}


def test_training_on_a_full_disk_then_after_freeing_space(small_disk, tmp_path):
    root = write_store(tmp_path, {"S-0": "train", "S-1": "val"})
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["train"].update(epochs=2, batch_size=8, slices_per_epoch=32)
    params["train"]["model"].update(base_channels=4, depth=2)
    cmd = command(root, params, "roomy")
    model_at = cmd.index("--model-out") + 1
    full = [*cmd]
    full[model_at] = str(small_disk / "models" / "model.pt")
    result = subprocess.run(full, cwd=root, env=env(), capture_output=True, text=True,
                            timeout=600)
    error = one_error(result)
    assert "No space left on device" in error or "no space left" in error, error
    assert [p.name for p in small_disk.rglob("*") if p.is_file()] == ["filler"]
    (small_disk / "filler").unlink()
    for run in (full, cmd):
        result = subprocess.run(run, cwd=root, env=env(), capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    assert digest(small_disk / "models" / "model.pt") == digest(Path(cmd[model_at]))
