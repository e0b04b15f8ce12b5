"""Cross-validation (split.folds) through Snakemake and through DVC, on the smoke params."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import digest
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration
SHARED = ["models/folds/0/model.pt", "models/folds/1/train_history.csv",
          "models/model.pt", "reports/train_history.csv", "data/splits.csv",
          "reports/postprocess.json", "reports/postprocess_cv.json", "reports/per_subject.csv",
          "reports/metrics.json"]


def cv_repo(path: Path) -> Path:
    repo = copy_repo(path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"].update(folds=2, fold_ids=[0, 1], test_fraction=0.2)
    params["train"].update(checkpoint="last", epochs=1)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "cross-validation"], repo)
    return repo


@pytest.fixture(scope="module")
def cv_runs(tmp_path_factory) -> tuple[Path, Path]:
    snake = cv_repo(tmp_path_factory.mktemp("cv-snakemake"))
    dvc = cv_repo(tmp_path_factory.mktemp("cv-dvc"))
    out = run(["snakemake", "--cores", "2", "reports/metrics.json"], snake)
    assert "train_fold" in out
    out = run(["dvc", "repro", "evaluate"], dvc)
    assert {"train_fold@0", "train_fold@1"} <= set(re.findall(r"Running stage '([\w@]+)'", out))
    return snake, dvc


def test_both_runners_give_the_same_ensemble_and_scores(cv_runs):
    snake, dvc = cv_runs
    for rel in SHARED:
        assert digest(snake / rel) == digest(dvc / rel), f"{rel} differs"


def test_every_subject_is_scored_out_of_fold_or_on_the_test_set(cv_runs):
    repo = cv_runs[0]
    splits = pd.read_csv(repo / "data/splits.csv")
    assert sorted(splits["fold"].unique()) == [-1, 0, 1]
    per_subject = pd.read_csv(repo / "reports/per_subject.csv")
    assert sorted(per_subject["subject"]) == sorted(splits["subject"])
    merged = per_subject.merge(splits[["subject", "fold"]], on="subject", suffixes=("", "_s"))
    assert (merged["fold"] == merged["fold_s"]).all()
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert metrics["cv"]["n_subjects"] == 5 and metrics["test"]["n_subjects"] == 1
    assert set(metrics["cv_folds"]) == {"0", "1"}
    assert 0 <= metrics["cv"]["dice"]["mean"] <= 1
    history = pd.read_csv(repo / "reports/train_history.csv")
    assert history["fold"].tolist() == [0, 1]
    summary = json.loads((repo / "reports/postprocess_cv.json").read_text())
    assert summary["folds"] == 2
    assert set(summary["cross_validated"]) == {"WT", "TC", "ET", "mean"}


def test_mlflow_has_one_parent_run_with_a_child_per_fold(cv_runs):
    repo = cv_runs[1]
    client = MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    parent_id = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.data.tags["cross_validation"] == "2 folds"
    assert "cv_dice_WT" in parent.data.metrics or "test_dice_WT" in parent.data.metrics
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(c.data.tags["fold"] for c in children) == ["0", "1"]


def test_predict_applies_the_fold_ensemble(cv_runs, tmp_path):
    repo = cv_runs[0]
    subject = pd.read_csv(repo / "data/splits.csv")["subject"].iloc[0]
    out = tmp_path / "pred.nii.gz"
    run(["brainseg", "predict", "--model", "models/model.pt", "--postprocess",
         "reports/postprocess.json", "--input", f"data/raw/{subject}", "--output", str(out)],
        repo)
    pred, raw = nib.load(out), nib.load(repo / f"data/raw/{subject}/{subject}_t1.nii.gz")
    assert pred.shape == raw.shape and (pred.affine == raw.affine).all()
