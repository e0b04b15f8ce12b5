"""The anomaly stage switched on, through Snakemake and through DVC, on the smoke params."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import digest
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration
OUTPUTS = ["models/autoencoder.pt", "reports/anomaly.json", "reports/anomaly_subjects.csv",
           "reports/anomaly"]


def anomaly_repo(path: Path) -> Path:
    """A smoke copy with `brainseg params --set anomaly.enabled=true` committed."""
    repo = copy_repo(path)
    run(["brainseg", "-q", "params", "--base", "params.yaml", "--set", "anomaly.enabled=true",
         "--out", "params.yaml"], repo)
    assert yaml.safe_load((repo / "params.yaml").read_text())["anomaly"]["runs"] == [
        "autoencoder"]
    run(["git", "commit", "-qam", "anomaly on"], repo)
    return repo


def test_snakemake_and_dvc_run_the_stage_when_on_and_write_the_same_bytes(tmp_path):
    snakemake_repo = anomaly_repo(tmp_path / "snakemake")
    dvc_repo = anomaly_repo(tmp_path / "dvc")
    dry = run(["snakemake", "--cores", "2", "-n", "--quiet", "rules"], snakemake_repo)
    assert re.search(r"^anomaly\s+1\s*$", dry, re.M), dry
    run(["snakemake", "--cores", "2", *OUTPUTS[:3]], snakemake_repo)
    out = run(["dvc", "repro", "anomaly"], dvc_repo)
    assert "Running stage 'anomaly@autoencoder'" in out, out
    for name in OUTPUTS:
        assert digest(snakemake_repo / name) == digest(dvc_repo / name), name
    metrics = json.loads((dvc_repo / "reports/anomaly.json").read_text())
    assert metrics["test"]["n_subjects"] >= 1
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    assert "anomaly@autoencoder" in lock["stages"]
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], dvc_repo))
    assert any("reports/anomaly.json" in json.dumps(v) for v in shown.values()), shown
