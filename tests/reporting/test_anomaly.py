"""The anomaly stage end to end: `brainseg anomaly` on a tiny slice store made by the
pipeline's own download, extract, normalize and split."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from brainseg.data.download import run_download
from brainseg.data.extract import run_extract
from brainseg.data.normalize import run_normalize
from brainseg.data.split import read_splits, run_split
from brainseg.params import validate_params
from brainseg.reporting.anomaly import Round, anomaly_rounds
from tests.conftest import digest, write_subject


def tiny_store(tmp_path: Path, params: dict) -> Path:
    """Six tiny subjects through download (local), extract, normalize and split."""
    source = tmp_path / "source"
    for i in range(6):
        write_subject(source, f"TINY-{i:03d}", seed=i)
    params["download"].update(source="local", path=str(source))
    params["anomaly"].update(enabled=True, runs=["autoencoder"])
    validate_params(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_download(params=params, out_dir=tmp_path / "data/raw", jobs=1)
    run_extract(params=params, raw_dir=tmp_path / "data/raw", out_dir=tmp_path / "ext", jobs=1)
    run_normalize(params=params, in_dir=tmp_path / "ext", out_dir=tmp_path / "data/slices",
                  jobs=1)
    run_split(params=params, manifest=tmp_path / "data/raw/manifest.csv",
              out=tmp_path / "data/splits.csv")
    return tmp_path


def anomaly(folder: Path, out: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "brainseg", "anomaly", "--params", "params.yaml",
         "--slices-dir", "data/slices", "--splits", "data/splits.csv",
         "--model-out", f"{out}/autoencoder.pt", "--metrics-out", f"{out}/anomaly.json",
         "--per-subject-out", f"{out}/anomaly_subjects.csv", "--figures-dir", f"{out}/figures",
         "--threads", "1", "--device", "cpu"],
        cwd=folder, capture_output=True, text=True, timeout=600)


def test_the_stage_trains_scores_the_test_subjects_and_is_reproducible(tmp_path, params):
    folder = tiny_store(tmp_path, params)
    first, second = anomaly(folder, "a"), anomaly(folder, "b")
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    test = read_splits(folder / "data/splits.csv").query("split == 'test'")["subject"]
    rows = pd.read_csv(folder / "a/anomaly_subjects.csv")
    assert sorted(rows["subject"]) == sorted(test)
    assert {"auroc", "average_precision", "dice_WT", "threshold"} <= set(rows)
    metrics = json.loads((folder / "a/anomaly.json").read_text())
    assert metrics["test"]["n_subjects"] == len(test)
    for key in ("auroc", "average_precision", "dice_WT"):
        assert 0.0 <= metrics["test"][key]["pooled"] <= 1.0
    assert len(metrics["thresholds"]) == 1 and metrics["thresholds"][0]["fold"] is None
    figures = sorted(p.name for p in (folder / "a/figures").iterdir())
    assert figures == sorted([*(f"{s}.png" for s in test), "roc.png"])
    # two CPU runs on one thread: the same weights, metrics and figures, byte for byte
    for name in ("autoencoder.pt", "anomaly.json", "anomaly_subjects.csv", "figures"):
        assert digest(folder / "a" / name) == digest(folder / "b" / name), name
    saved = torch.load(folder / "a/autoencoder.pt", weights_only=True)
    assert saved["modalities"] == ["t1", "t1ce", "t2", "flair"]
    assert saved["config"]["in_channels"] == 4 and len(saved["models"]) == 1
    assert "INFO" in first.stderr and "anomaly test: AUROC" in first.stderr
    # each run is recorded in MLflow (the default store: mlflow.db where it runs)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(params["train"]["experiment"])
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and {r.data.tags["stage"] for r in runs} == {"anomaly"}
    run = runs[0]
    assert run.data.metrics["test_auroc_pooled"] == pytest.approx(
        metrics["test"]["auroc"]["pooled"])
    assert run.data.params["anomaly.patch_size"] == "[16, 16, 16]"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "anomaly")}
    assert "anomaly/anomaly.json" in artifacts and "anomaly/figures" in artifacts


def test_with_folds_every_subject_is_scored_once_by_a_model_that_never_saw_it(tmp_path,
                                                                                 params):
    params["split"].update(folds=3, fold_ids=[0, 1, 2], test_fraction=0.0)
    params["anomaly"]["healthy_synthetic"] = 0
    folder = tiny_store(tmp_path, params)
    splits = read_splits(folder / "data/splits.csv")
    rounds = anomaly_rounds(splits)
    assert [r.fold for r in rounds] == [0, 1, 2]
    for r in rounds:
        assert not set(r.train) & (set(r.val) | set(r.scored)) and not set(r.val) & set(r.scored)
    result = anomaly(folder, "cv")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = pd.read_csv(folder / "cv/anomaly_subjects.csv")
    assert sorted(rows["subject"]) == sorted(splits["subject"])
    assert sorted(rows["fold"].unique()) == [0, 1, 2]
    metrics = json.loads((folder / "cv/anomaly.json").read_text())
    assert "cv" in metrics and "test" not in metrics and metrics["cv"]["n_subjects"] == 6
    assert [t["fold"] for t in metrics["thresholds"]] == [0, 1, 2]


def test_a_missing_modality_is_refused_naming_the_store(tmp_path, params):
    folder = tiny_store(tmp_path, params)
    for meta in (folder / "data/slices").glob("*/meta.json"):  # as an LGG store lists them
        meta.write_text(json.dumps({**json.loads(meta.read_text()),
                                    "modalities": ["t1", "t1ce", "flair"]}))
    params["anomaly"]["modalities"] = ["t2"]
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    result = anomaly(folder, "bad")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "data/slices: anomaly.modalities t2 not among its modalities t1 t1ce flair" in \
        result.stderr
    assert not (folder / "bad").exists()


@pytest.mark.parametrize("command", ["anomaly"])
def test_help_names_every_output(command, tmp_path):
    result = subprocess.run([sys.executable, "-m", "brainseg", command, "--help"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    for option in ("--slices-dir", "--splits", "--model-out", "--metrics-out",
                   "--per-subject-out", "--figures-dir", "--threads"):
        assert option in result.stdout


def test_rounds_follow_evaluate_a_test_set_beside_folds_is_scored_once_more():
    splits = pd.DataFrame({
        "subject": [f"S{i}" for i in range(8)],
        "split": ["train"] * 6 + ["test"] * 2,
        "fold": [0, 0, 1, 1, 2, 2, -1, -1]})
    rounds = anomaly_rounds(splits)
    assert [r.fold for r in rounds] == [0, 1, 2, -1]
    assert rounds[0].scored == ["S0", "S1"] and rounds[0].val == ["S2", "S3"]
    assert rounds[0].train == ["S4", "S5"]
    assert rounds[2].val == ["S0", "S1"]  # fold 2 is tuned on fold 0 (mod k)
    assert rounds[-1].scored == ["S6", "S7"] and rounds[-1].val == ["S0", "S1"]
    assert rounds[-1].train == ["S2", "S3", "S4", "S5"]
    plain = pd.DataFrame({"subject": ["A", "B", "C"], "split": ["train", "val", "test"]})
    assert anomaly_rounds(plain) == [Round(None, ["A"], ["B"], ["C"])]
