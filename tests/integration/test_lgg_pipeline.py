"""The Kaggle LGG layout through both runners: WT trained and scored, TC/ET not available."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, digest
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration
LGG = REPO.parent / "shared" / "fixtures" / "lgg"
PROFILE = ["--workflow-profile", "workflow/profiles/default"]


def lgg_copy(folder: Path) -> Path:
    """A copy of the repository with the smoke params reading the LGG fixture."""
    repo = copy_repo(folder)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(source="local", path=str(LGG), layout="auto")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "lgg params"], repo)
    return repo


def check_wt_only_results(repo: Path) -> dict:
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    test, stats = metrics["test"], metrics["test_stats"]
    assert isinstance(test["dice"]["WT"], float) and 0 <= test["dice"]["WT"] <= 1
    assert test["dice"]["TC"] is None and test["dice"]["ET"] is None
    assert test["not_available"] == ["TC", "ET"]
    assert stats["dice"]["ET"]["available"] is False
    text = (repo / "reports/per_subject.csv").read_text()
    per_subject = pd.read_csv(repo / "reports/per_subject.csv")
    assert per_subject["dice_TC"].isna().all() and per_subject["dice_WT"].notna().all()
    assert ",n/a," in text
    tried = pd.read_csv(repo / "reports/postprocess.csv")
    assert not tried["option"].str.endswith(("_TC", "_ET")).any()
    assert tried["dice_TC"].isna().all() and tried["dice_WT"].notna().all()
    manifest = pd.read_csv(repo / "data/raw/manifest.csv")
    assert set(manifest["regions"]) == {"WT"}
    assert set(manifest["modalities"]) == {"t1 t1ce flair"}
    assert not list((repo / "data/raw").glob("*/*_t2.nii.gz"))
    meta = json.loads(next((repo / "data/slices").glob("*/meta.json")).read_text())
    assert meta["modalities"] == ["t1", "t1ce", "flair"] and meta["regions"] == ["WT"]
    for name in ("dice_boxplot", "per_subject_table", "overlay_median", "augmentation"):
        assert (repo / f"reports/figures/{name}.png").is_file()
    return metrics


@pytest.mark.skipif(not LGG.is_dir(), reason=f"Kaggle LGG fixture not found at {LGG}")
def test_the_lgg_slices_train_and_evaluate_wt_through_snakemake_and_dvc(tmp_path):
    snake = lgg_copy(tmp_path / "snakemake")
    run(["snakemake", *PROFILE, "--cores", "2"], snake)
    by_snakemake = check_wt_only_results(snake)
    assert not (snake / "logs/realism.log").exists()  # Snakemake: synthetic sources only
    dvc = lgg_copy(tmp_path / "dvc")
    run(["dvc", "repro"], dvc)
    assert check_wt_only_results(dvc) == by_snakemake
    for path in ("data/raw/manifest.csv", "data/splits.csv"):
        assert digest(dvc / path) == digest(snake / path)
    realism = json.loads((dvc / "reports/realism.json").read_text())
    assert realism["modalities"] == ["t1", "t1ce", "flair"]  # those both sides have
    scores = realism["real_scores"]["dice"]  # the BraTS case, by the WT-only model
    assert 0 <= scores["WT"]["mean"] <= 1
    assert scores["TC"] == {"available": False} and scores["ET"] == {"available": False}
