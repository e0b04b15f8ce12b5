"""Temporary copies of the repository with the smoke params, run by the real tools."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BIN = Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["GIT_AUTHOR_NAME"] = env["GIT_COMMITTER_NAME"] = "brainseg-test"
    env["GIT_AUTHOR_EMAIL"] = env["GIT_COMMITTER_EMAIL"] = "test@localhost"
    return env


def run(cmd: list[str], cwd: Path, timeout: int = 600) -> str:
    """Run a command; fail the test with its output if it exits non-zero."""
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True,
                            timeout=timeout)
    output = result.stdout + result.stderr
    if result.returncode != 0:
        logs = "".join(f"\n--- {p}\n{p.read_text()[-3000:]}" for p in
                       sorted((cwd / "logs").rglob("*.log")) if (cwd / "logs").exists())
        pytest.fail(f"{' '.join(cmd)} exited {result.returncode}:\n{output[-6000:]}{logs}")
    return output


def copy_repo(dst: Path) -> Path:
    """Copy the tracked (and not ignored) files, put the smoke params in place, commit."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel, follow_symlinks=False)
    shutil.copy(REPO / "tests" / "params-smoke.yaml", dst / "params.yaml")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        run(cmd, dst)
    return dst


@pytest.fixture(scope="session")
def snakemake_repo(tmp_path_factory) -> Path:
    """A copy where `snakemake --cores 2` has run the whole smoke pipeline, as `make run` does."""
    repo = copy_repo(tmp_path_factory.mktemp("snakemake"))
    run(["snakemake", "--workflow-profile", "workflow/profiles/default", "--cores", "2"], repo)
    return repo


@pytest.fixture(scope="session")
def dvc_repo(tmp_path_factory) -> Path:
    """A copy where `dvc repro` has run the whole smoke pipeline."""
    repo = copy_repo(tmp_path_factory.mktemp("dvc"))
    run(["dvc", "repro"], repo)
    return repo
