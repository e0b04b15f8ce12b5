"""Reports on the smoke pipeline: `snakemake --report`, `dvc plots show`, `dvc metrics diff`."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainseg.reporting.figures import FIGURES
from tests.integration.conftest import run, tool_env

pytestmark = pytest.mark.integration
REPORT_DIR = Path(__file__).parents[2] / "workflow" / "report"


def stdout_of(cmd: list[str], cwd: Path) -> str:
    """Standard output alone (DVC logs warnings to stderr), failing on a non-zero exit."""
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, f"{' '.join(cmd)}: {result.stdout}{result.stderr}"
    return result.stdout


def caption_phrase(rst: Path) -> str:
    """The first words of a caption, as they appear in the rendered report."""
    return " ".join(rst.read_text().split()[:6])


def test_snakemake_report_embeds_every_figure_with_its_caption(snakemake_repo):
    run(["snakemake", "--cores", "1", "--report", "reports/report.html"], snakemake_repo)
    html = (snakemake_repo / "reports/report.html").read_text()
    # the anomaly stage is off in the smoke params: its figures, and so its caption, are not
    # in the report (it is on in tests/integration/test_anomaly_pipeline.py)
    optional = {REPORT_DIR / "anomaly.rst"}
    captions = sorted(set(REPORT_DIR.glob("*.rst")) - optional)
    assert len(captions) >= len(FIGURES) + 2  # one per figure, the CSV, the JSON, ...
    for rst in captions:
        assert caption_phrase(rst) in html, f"caption {rst.name} missing from the report"
    for rst in optional:
        assert caption_phrase(rst) not in html, f"{rst.name}: an off stage in the report"
    for name in [*FIGURES, "per_subject.csv", "metrics.json"]:
        assert f"filename={name};base64," in html, f"{name} is not embedded"
    # self-contained: every result is a data URI, nothing is linked from the file system
    assert not re.search(r"""(src|href)=["'](file:|\.\./|reports/)""", html)


def test_dvc_plots_show_renders_the_declared_plots(dvc_repo, tmp_path):
    shown = json.loads(stdout_of(["dvc", "plots", "show", "--json", "-o",
                                  str(tmp_path / "plots")], dvc_repo))
    assert shown.get("errors", []) == [], shown["errors"]
    plots = shown["data"]
    declared = yaml.safe_load((dvc_repo / "dvc.yaml").read_text())["plots"]
    ids = [next(iter(p)) if isinstance(p, dict) else p for p in declared]
    assert set(ids) <= set(plots)
    epochs = len(pd.read_csv(dvc_repo / "reports/train_history.csv"))
    curves = plots["Validation Dice"][0]["content"]["data"]["values"]
    assert {v["field"] for v in curves} == {"val_dice_WT", "val_dice_TC", "val_dice_ET",
                                            "val_dice_mean"}
    assert len(curves) == 4 * epochs
    per_region = plots["Test Dice per region"][0]["content"]["data"]["values"]
    subjects = pd.read_csv(dvc_repo / "reports/per_subject.csv")["subject"]
    assert {(v["subject"], v["field"]) for v in per_region} == {
        (s, f"dice_{r}") for s in subjects for r in ("WT", "TC", "ET")}
    for name in FIGURES:
        assert plots[f"reports/figures/{name}"][0]["type"] == "image"
    run(["dvc", "plots", "show", "-o", str(tmp_path / "html")], dvc_repo)
    assert "Test Dice per region" in (tmp_path / "html" / "index.html").read_text()


def test_dvc_metrics_diff_compares_two_committed_runs(dvc_repo, tmp_path):
    """Commit a run, change a param, rerun and commit: `dvc metrics diff` reports the change.

    The param is the test fraction (one test subject, then two): the smoke model is too
    weak for a training param to move its test Dice reliably, a different test set
    always does. Only split, train, postprocess and evaluate rerun, not the data stages.
    """
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-a", str(dvc_repo), str(repo)], check=True)  # keeps the hard links
    for store in ("mlflow.db", "mlruns"):  # a fresh MLflow store inside the copy
        subprocess.run(["rm", "-rf", str(repo / store)], check=True)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "first run", "--allow-empty"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"]["test_fraction"] = 0.35
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "evaluate"], repo)
    ran = set(re.findall(r"Running stage '(\w+)'", out))
    assert {"split", "train", "evaluate"} <= ran and not ran & {"download", "extract"}, out
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-qm", "two test subjects"], repo)
    diff = json.loads(stdout_of(["dvc", "metrics", "diff", "HEAD~1", "--json"], repo))
    changed = diff["reports/metrics.json"]
    assert "test.dice.mean" in changed, diff  # only changed metrics are listed
    assert changed["test.n_subjects"] == {"old": 1, "new": 2, "diff": 1}
    assert changed["test.dice.mean"]["new"] != changed["test.dice.mean"]["old"]
    assert changed["test.dice.mean"]["diff"] == pytest.approx(
        changed["test.dice.mean"]["new"] - changed["test.dice.mean"]["old"])
