"""A lab's DVC remote over SSH: a real sshd on 127.0.0.1 holds the store. One member runs
the whole smoke pipeline and pushes; a fresh clone pulls and finds
nothing to rerun; an experiment travels between members through the git remote and the
store; a remote that does not answer fails the push."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import digest
from tests.integration.conftest import run, tool_env
from tests.integration.engines import free_port, sshd

pytestmark = pytest.mark.integration
UP_TO_DATE = "Data and pipelines are up to date"
EXPERIMENT = "lab-epochs-2"


@pytest.fixture
def trained_repo(dvc_repo, tmp_path_factory) -> Path:
    """A copy of the session's `dvc_repro` run of the whole smoke pipeline (its cache too),
    with that run committed."""
    repo = tmp_path_factory.mktemp("dvc-remote") / "repo"
    shutil.copytree(dvc_repo, repo, symlinks=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "the pipeline run"], repo)
    return repo


def member(origin: Path, folder: Path, key: Path) -> Path:
    """What a lab member does: clone the git repository, give DVC their own key (in
    .dvc/config.local, never committed), pull the data."""
    run(["git", "clone", "-q", str(origin), str(folder)], folder.parent)
    run(["dvc", "remote", "modify", "--local", "store", "keyfile", str(key)], folder)
    run(["dvc", "pull"], folder)
    return folder


def test_lab_shares_data_and_experiments_through_an_ssh_remote(trained_repo, tmp_path):
    repo = trained_repo
    with sshd() as server:
        store = server.folder / "store"
        url = f"ssh://root@127.0.0.1:{server.port}{store}"
        run(["dvc", "remote", "add", "--default", "store", url], repo)
        run(["dvc", "remote", "modify", "store", "timeout", "30"], repo)
        run(["dvc", "remote", "modify", "--local", "store", "keyfile", str(server.key)], repo)
        assert "keyfile" not in (repo / ".dvc/config").read_text()
        run(["git", "add", "-A"], repo)
        run(["git", "commit", "-qm", "pipeline run, SSH remote"], repo)
        out = run(["dvc", "push"], repo)
        assert "pushed" in out and any(p.is_file() for p in store.rglob("*")), out

        clone = member(repo, tmp_path / "clone", server.key)
        assert UP_TO_DATE in run(["dvc", "status"], clone)
        assert "Running stage" not in run(["dvc", "repro"], clone)
        for rel in ("models/model.pt", "reports/train_history.csv", "data/splits.csv",
                    "reports/metrics.json", "reports/per_subject.csv",
                    "reports/figures/dice_boxplot.png"):
            assert digest(clone / rel) == digest(repo / rel), rel

        # An experiment run in the clone reaches a third member through origin and the store.
        run(["dvc", "exp", "run", "-n", EXPERIMENT, "-S", "train.epochs=2"], clone,
            timeout=1200)
        run(["dvc", "exp", "push", "origin", EXPERIMENT], clone)
        other = member(repo, tmp_path / "other", server.key)
        run(["dvc", "exp", "pull", "origin", EXPERIMENT], other)
        assert EXPERIMENT in run(["dvc", "exp", "list", "--name-only"], other)
        run(["dvc", "exp", "apply", EXPERIMENT], other)
        params = yaml.safe_load((other / "params.yaml").read_text())
        assert params["train"]["epochs"] == 2
        assert len(pd.read_csv(other / "reports/train_history.csv")) == 2
        assert UP_TO_DATE in run(["dvc", "status"], other)

    # A remote that does not answer: `dvc push` fails at once, naming the fault.
    dead = f"ssh://root@127.0.0.1:{free_port()}/store"
    run(["dvc", "remote", "add", "dead", dead], repo)
    result = subprocess.run(["dvc", "push", "-r", "dead"], cwd=repo, env=tool_env(),
                            capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "ERROR" in output and ("refused" in output or "failed" in output), output
