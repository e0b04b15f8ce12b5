"""`brainseg compare` reading revisions (real git + DVC, a `dvc exp run` experiment) and
MLflow runs (a real SQLite store, the artifact logged the way `evaluate` logs it)."""

from __future__ import annotations

import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from brainseg.errors import BrainsegError
from brainseg.reporting.compare import run_compare
from brainseg.reporting.sources import RUN_ARTIFACT, read_source
from brainseg.tracking import log_to_run, write_run_info
from tests.integration.conftest import run
from tests.reporting.test_compare import N, per_subject, write

# A stage that writes reports/per_subject.csv for params.yaml's `shift` (from tables/),
# declared as dvc.yaml declares evaluate's output: a plot with cache: false, so git holds it.
STAGE = """\
import pathlib, shutil, yaml
shift = yaml.safe_load(open("params.yaml"))["shift"]
pathlib.Path("reports").mkdir(exist_ok=True)
shutil.copy(f"tables/{shift}.csv", "reports/per_subject.csv")
"""
DVC_YAML = """\
stages:
  evaluate:
    cmd: {python} make_reports.py
    deps: [make_reports.py, tables]
    params: [shift]
    plots:
      - reports/per_subject.csv:
          cache: false
"""


@pytest.fixture
def dvc_project(tmp_path) -> Path:
    """A git + DVC repository whose two commits hold reports/per_subject.csv (shift 0 and
    0.02), made by the real `git`, `dvc repro`."""
    repo = tmp_path / "project"
    repo.mkdir()
    for shift in (0.0, 0.02, 0.05):
        write(per_subject(shift=shift), repo / "tables", f"{shift}.csv")
    (repo / "make_reports.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(DVC_YAML.format(python=sys.executable))
    (repo / "params.yaml").write_text("shift: 0.0\n")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "repro", "-q"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first"], repo)
    (repo / "params.yaml").write_text("shift: 0.02\n")
    run(["dvc", "repro", "-q"], repo)
    run(["git", "commit", "-qam", "second"], repo)
    return repo


def test_two_revisions_and_an_experiment(dvc_project):
    assert "reports/per_subject.csv" in run(["git", "ls-files"], dvc_project)  # not cached
    result = run_compare("rev:HEAD~1", "rev:HEAD", repo=dvc_project, n_boot=200)
    wt = result["regions"]["WT"]
    assert wt["n"] == N and wt["mean_diff"] == pytest.approx(0.02 * 7 / 8)  # i % 3 over 8
    run(["dvc", "exp", "run", "-q", "-n", "exp-wider", "-S", "shift=0.05"], dvc_project)
    assert "exp-wider" in run(["dvc", "exp", "show", "--csv"], dvc_project)
    run(["git", "checkout", "-q", "--", "."], dvc_project)  # the workspace back at HEAD
    exp = run_compare("rev:HEAD", "rev:exp-wider", repo=dvc_project, n_boot=200)
    assert exp["regions"]["WT"]["mean_diff"] == pytest.approx(0.03 * 7 / 8)
    assert exp["b"]["source"] == "rev:exp-wider"


def test_bad_revisions_are_refused(dvc_project, tmp_path):
    with pytest.raises(BrainsegError, match=r"B: cannot read reports/per_subject.csv at "
                       r"revision 'no-such-rev'.*unknown Git revision"):
        run_compare("rev:HEAD", "rev:no-such-rev", repo=dvc_project)
    with pytest.raises(BrainsegError, match=r"A: cannot read .* not a git repository"):
        run_compare("rev:HEAD", "rev:HEAD", repo=tmp_path)
    with pytest.raises(BrainsegError, match="needs a revision"):
        read_source("rev:", dvc_project)


def mlflow_run(uri: str, tmp_path: Path, name: str, table: pd.DataFrame) -> str:
    """A training's run, with per_subject.csv logged by `log_to_run` as `evaluate` does."""
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.set_experiment("compare-test")
    with mlflow.start_run(run_name=name, experiment_id=experiment.experiment_id) as active:
        run_id = active.info.run_id
    info = tmp_path / f"{name}.json"
    write_run_info(info, run_id, "compare-test")
    reports = write(table, tmp_path / name / "reports")
    log_to_run(uri, info, "evaluation", [reports / "per_subject.csv"], {"test_dice_WT": 0.5})
    return run_id


def test_two_mlflow_runs_by_runs_uri(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    base = mlflow_run(uri, tmp_path, "base", per_subject())
    new = mlflow_run(uri, tmp_path, "new", per_subject(shift=0.01))
    result = run_compare(f"runs:/{base}", f"runs:/{new}", tracking_uri=uri, n_boot=200)
    assert result["regions"]["ET"]["mean_diff"] == pytest.approx(0.01 * 7 / 8)
    explicit = read_source(f"runs:/{new}/{RUN_ARTIFACT}", tracking_uri=uri)
    assert len(explicit) == N
    with pytest.raises(BrainsegError, match=r"B: cannot read artifact evaluation/per_subject\.csv "
                       r"of MLflow run 0123456789abcdef"):
        run_compare(f"runs:/{base}", "runs:/0123456789abcdef", tracking_uri=uri)
    with pytest.raises(BrainsegError, match=r"A: cannot read artifact evaluation/nothing\.csv"):
        run_compare(f"runs:/{base}/evaluation/nothing.csv", f"runs:/{new}", tracking_uri=uri)


def test_cli_reads_runs_with_tracking_uri(tmp_path, monkeypatch):
    from tests.reporting.test_compare import brainseg

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'other.db'}"
    base = mlflow_run(uri, tmp_path, "base", per_subject())
    new = mlflow_run(uri, tmp_path, "new", per_subject(shift=0.01))
    done = brainseg("compare", f"runs:/{base}", f"runs:/{new}", "--tracking-uri", uri,
                    "--bootstrap", "100", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"A (A): runs:/{base}\n" in done.stdout
