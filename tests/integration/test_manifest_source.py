"""`download.source: manifest` through both runners: one Snakemake job per listed subject."""

from __future__ import annotations

import hashlib
import re

import pandas as pd
import pytest
import yaml

from tests.conftest import write_subject
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration
SUBJECTS = ["LIST-000", "LIST-001"]
KEYS = ["t1", "t1ce", "t2", "flair", "seg"]


def test_snakemake_and_dvc_download_a_listed_cohort(tmp_path, served):
    www, base = served
    lines = ["# two tiny subjects", "subject\tmodality\tpath\tbytes\tsha256"]
    for i, s in enumerate(SUBJECTS):
        folder = write_subject(www / "v1", s, shape=(24, 24, 10), seed=i)
        for key in KEYS:
            data = (folder / f"{s}_{key}.nii.gz").read_bytes()
            lines.append(f"{s}\t{key}\tv1/{s}/{s}_{key}.nii.gz\t{len(data)}\t"
                         f"{hashlib.sha256(data).hexdigest()}")
    repo = copy_repo(tmp_path / "repo")
    (repo / "workflow/manifests/two.tsv").write_text("\n".join(lines) + "\n")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(source="manifest", manifest="workflow/manifests/two.tsv",
                              url=base)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    out = run(["snakemake", "--cores", "2", "data/raw/manifest.csv"], repo)
    assert re.search(r"^download_subject\s+2$", out, re.M)  # one job per subject
    assert not re.search(r"^fetch\s", out, re.M)  # no checkpoint: the ids are listed
    manifest = (repo / "data/raw/manifest.csv").read_bytes()
    table = pd.read_csv(repo / "data/raw/manifest.csv")
    assert table["subject"].tolist() == SUBJECTS and set(table["source"]) == {"manifest"}
    for s in SUBJECTS:
        assert (repo / "data/raw" / s / f"{s}_seg.nii.gz").read_bytes() == (
            www / "v1" / s / f"{s}_seg.nii.gz").read_bytes()
    assert "Nothing to be done" in run(["snakemake", "--cores", "2", "-n",
                                        "data/raw/manifest.csv"], repo)

    run(["dvc", "repro", "download"], repo)
    assert (repo / "data/raw/manifest.csv").read_bytes() == manifest
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["download"]
    assert "workflow/manifests/two.tsv" in [d["path"] for d in lock["deps"]]
