"""scripts/slurm-local.sh refuses bad options before it touches anything (no root needed)."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "scripts" / "slurm-local.sh"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize(("args", "message"), [
    (["up", "--nodes", "0"], "--nodes must be 1 to 16, not '0'"),
    (["up", "--nodes", "17"], "--nodes must be 1 to 16, not '17'"),
    (["up", "--gpus", "two"], "--gpus must be 0 to 16, not 'two'"),
    (["up", "--cpus", "0"], "--cpus must be a whole number >= 1, not '0'"),
    (["up", "--timeout", "soon"], "--timeout must be whole seconds, not 'soon'"),
    (["start"], "unknown argument 'start' (expected up, down or status)"),
    ([], "no command given (up, down or status)"),
])
def test_a_bad_option_ends_with_one_message(args, message, tmp_path):
    result = run(*args, "--state-dir", str(tmp_path / "state"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"slurm-local: error: {message}" in result.stderr
    assert not (tmp_path / "state").exists()


def test_help_names_every_option():
    result = run("--help")
    assert result.returncode == 0, result.stderr
    for option in ("--state-dir", "--timeout", "--cpus", "--nodes", "--gpus", "up", "down",
                   "status"):
        assert option in result.stdout, option
