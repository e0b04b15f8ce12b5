"""Snakemake with `download.source: url`: the fetch checkpoint, then the usual fan-out."""

from __future__ import annotations

import hashlib
import tarfile

import pandas as pd
import pytest
import yaml

from tests.conftest import write_subject
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration


def test_snakemake_runs_a_url_source_end_to_end(tmp_path, served):
    www, base = served
    cohort = tmp_path / "cohort"
    for i in range(6):
        write_subject(cohort, f"URL-{i:03d}", shape=(48, 48, 16), seed=i)
    with tarfile.open(www / "brats.tar.gz", "w:gz") as tar:
        tar.add(cohort, arcname="BraTS2020_TrainingData")
    digest = hashlib.sha256((www / "brats.tar.gz").read_bytes()).hexdigest()
    repo = copy_repo(tmp_path / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(source="url", url=f"{base}/brats.tar.gz", sha256=digest)
    params["extract"].update(image_size=32, min_brain_pixels=8)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["snakemake", "--cores", "2"], repo)
    manifest = pd.read_csv(repo / "data/raw/manifest.csv")
    assert manifest["subject"].tolist() == [f"URL-{i:03d}" for i in range(6)]
    assert (repo / "data/source/archive/brats.tar.gz").is_file()
    assert (repo / "reports/metrics.json").is_file()
    assert "Nothing to be done" in run(["snakemake", "--cores", "2", "-n"], repo)
