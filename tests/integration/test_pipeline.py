"""The whole pipeline through Snakemake and through DVC, on the smoke params."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import onnx
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from brainseg.data.subjects import synthetic_ids
from brainseg.evaluation.labelmaps import read_settings
from brainseg.io.hashing import file_digests
from brainseg.tracking import dvc_dir_hash
from tests.conftest import digest
from tests.integration.conftest import run

pytestmark = pytest.mark.integration
SMOKE = yaml.safe_load((Path(__file__).parents[1] / "params-smoke.yaml").read_text())
SUBJECTS = synthetic_ids(SMOKE["download"]["prefix"], SMOKE["download"]["n_subjects"])
FIGURES = ["learning_curves", "dice_boxplot", "overlay_best", "overlay_median", "overlay_worst"]
DATA_ARTIFACTS = ["data/raw", "data/extracted", "data/slices", "data/splits.csv"]


def check_artifacts(repo: Path) -> None:
    manifest = pd.read_csv(repo / "data/raw/manifest.csv")
    assert manifest["subject"].tolist() == SUBJECTS
    assert (manifest["wt_voxels"] > 0).all() and (manifest["shape"] == "240x240x155").all()
    for s in SUBJECTS:
        for key in ("t1", "t1ce", "t2", "flair", "seg"):
            assert (repo / f"data/raw/{s}/{s}_{key}.nii.gz").is_file()
        assert {p.name for p in (repo / f"data/slices/{s}").iterdir()} == {
            "image.npy", "label.npy", "meta.json"}
    splits = pd.read_csv(repo / "data/splits.csv")
    assert splits["split"].value_counts().to_dict() == {"train": 4, "val": 1, "test": 1}
    history = pd.read_csv(repo / "reports/train_history.csv")
    assert history["epoch"].tolist() == list(range(1, SMOKE["train"]["epochs"] + 1))
    chosen = read_settings(repo / "reports/postprocess.json")
    tried = pd.read_csv(repo / "reports/postprocess.csv")
    assert tried["option"].iloc[0] == "baseline" and tried["dice_mean"].between(0, 1).all()
    assert chosen.flip_tta == bool(tried.loc[tried["option"] == "flip_tta", "chosen"].any())
    metrics = json.loads((repo / "reports/metrics.json").read_text())
    assert set(metrics["test"]["dice"]) == {"WT", "TC", "ET", "mean"}
    assert set(metrics["test"]["hd95"]) == {"WT", "TC", "ET"}
    assert all(0 <= v <= 1 for v in metrics["test"]["dice"].values())
    assert set(metrics["test"]["lesionwise_dice"]) == {"WT", "TC", "ET"}
    assert 0 <= metrics["test"]["lesionwise_dice"]["WT"] <= 1
    per_subject = pd.read_csv(repo / "reports/per_subject.csv")
    assert {f"lesionwise_{m}_WT" for m in ("dice", "hd95", "nsd", "tp", "fp", "fn")} <= set(
        per_subject.columns)
    test_subjects = sorted(splits.loc[splits["split"] == "test", "subject"])
    assert per_subject["subject"].tolist() == test_subjects
    for s in test_subjects:
        pred = nib.load(repo / f"data/predictions/{s}_seg.nii.gz")
        raw = nib.load(repo / f"data/raw/{s}/{s}_t1.nii.gz")
        assert pred.shape == raw.shape and (pred.affine == raw.affine).all()
        assert set(pd.unique(pred.get_fdata().ravel())) <= {0, 1, 2, 4}
    for name in FIGURES:
        assert (repo / f"reports/figures/{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    realism = json.loads((repo / "reports/realism.json").read_text())
    assert realism["real_subjects"] == ["TCGA-DU-7294"]
    assert 0 <= realism["real_scores"]["dice"]["WT"]["mean"] <= 1
    for name in ("histograms", "tumour_volumes", "synthetic_vs_real"):
        assert (repo / f"reports/realism/{name}.png").is_file()
    meta = {p.key: p.value for p in onnx.load(repo / "models/model.onnx").metadata_props}
    assert meta["checkpoint_sha256"] == file_digests(repo / "models/model.pt", "sha256")[0]
    assert not list(repo.rglob(".tmp-*")), "temporary files left behind"


def mlflow_run(repo: Path):
    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    run_id = json.loads((repo / "models/mlflow_run.json").read_text())["run_id"]
    return client, client.get_run(run_id)


def test_snakemake_builds_every_artifact(snakemake_repo):
    check_artifacts(snakemake_repo)


def test_dvc_builds_every_artifact(dvc_repo):
    check_artifacts(dvc_repo)
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"download", "extract", "normalize", "split", "train",
                                   "export", "postprocess", "evaluate", "figures", "realism"}


@pytest.mark.parametrize("runner", ["snakemake_repo", "dvc_repo"])
def test_mlflow_records_params_curves_metrics_and_figures(runner, request):
    repo = request.getfixturevalue(runner)
    client, found = mlflow_run(repo)
    assert found.info.status == "FINISHED"
    assert found.data.params["train.epochs"] == str(SMOKE["train"]["epochs"])
    assert found.data.params["train.model.depth"] == str(SMOKE["train"]["model"]["depth"])
    assert found.data.params["base.seed"] == str(SMOKE["base"]["seed"])
    for key in ("train_loss", "val_loss", "val_dice_WT", "val_dice_TC", "val_dice_ET"):
        steps = [m.step for m in client.get_metric_history(found.info.run_id, key)]
        assert steps == list(range(1, SMOKE["train"]["epochs"] + 1)), key
    metrics = json.loads((repo / "reports/metrics.json").read_text())["test"]
    assert found.data.metrics["test_dice_WT"] == pytest.approx(metrics["dice"]["WT"])
    assert found.data.metrics["test_hd95_ET"] == pytest.approx(metrics["hd95"]["ET"])
    assert found.data.metrics["test_lesionwise_dice_WT"] == pytest.approx(
        metrics["lesionwise_dice"]["WT"])
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", found.data.tags["git_commit"])
    assert found.data.tags["data_version"] == dvc_dir_hash(repo / "data/slices")
    assert "postprocess_val_dice_mean" in found.data.metrics
    artifacts = {a.path for d in ("checkpoint", "history", "evaluation", "figures", "postprocess",
                                  "onnx") for a in client.list_artifacts(found.info.run_id, d)}
    assert {"checkpoint/model.pt", "onnx/model.onnx", "history/train_history.csv",
            "evaluation/metrics.json",
            "evaluation/per_subject.csv", "postprocess/postprocess.json",
            "postprocess/postprocess.csv"} | {f"figures/{f}.png" for f in FIGURES} <= artifacts
    info = json.loads((repo / "models/mlflow_run.json").read_text())
    version = client.get_model_version(info["model_name"], info["model_version"])
    assert info["model_name"] == SMOKE["train"]["registered_model"]
    assert version.run_id == found.info.run_id
    assert float(version.tags["test_dice_WT"]) == pytest.approx(metrics["dice"]["WT"], rel=1e-5)


def test_data_version_tag_is_dvc_hash(dvc_repo):
    lock = yaml.safe_load((dvc_repo / "dvc.lock").read_text())
    out = next(o for o in lock["stages"]["normalize"]["outs"] if o["path"] == "data/slices")
    _, found = mlflow_run(dvc_repo)
    assert found.data.tags["data_version"] == out["md5"]


def test_snakemake_and_dvc_data_artifacts_are_byte_identical(snakemake_repo, dvc_repo):
    for rel in DATA_ARTIFACTS:
        a, b = snakemake_repo / rel, dvc_repo / rel
        files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() \
            else [Path()]
        files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()) if b.is_dir() \
            else [Path()]
        assert files_a == files_b, rel
        for f in files_a:
            assert digest(a / f) == digest(b / f), f"{rel}/{f} differs"


def test_second_run_is_a_no_op(snakemake_repo, dvc_repo):
    assert "Nothing to be done" in run(["snakemake", "--cores", "2", "-n"], snakemake_repo)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], dvc_repo)
    out = run(["dvc", "repro"], dvc_repo)
    assert "Running stage" not in out


def test_dvc_commit_records_what_snakemake_built(snakemake_repo):
    run(["dvc", "commit", "--force"], snakemake_repo)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], snakemake_repo)
    # DVC re-links the files it cached; `snakemake --touch` tells Snakemake they are current
    run(["snakemake", "--touch", "--cores", "1"], snakemake_repo)
    assert "Nothing to be done" in run(["snakemake", "--cores", "2", "-n"], snakemake_repo)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], snakemake_repo)
    lock = yaml.safe_load((snakemake_repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"download", "extract", "normalize", "split", "train",
                                   "export", "postprocess", "evaluate", "figures", "realism"}


def copy_run(repo: Path, dst: Path) -> Path:
    """A copy of a repository where a runner has run, its metadata, cache and times too."""
    shutil.copytree(repo, dst, symlinks=True)
    return dst


def set_epochs(repo: Path, epochs: int) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["train"]["epochs"] = epochs
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def test_changing_epochs_reruns_only_training_onwards(snakemake_repo, dvc_repo, tmp_path):
    # on copies: the session's runs stay as the smoke params made them, for the tests
    # that compare other runs with them (Slurm, the DVC remote)
    snakemake_repo = copy_run(snakemake_repo, tmp_path / "snakemake")
    dvc_repo = copy_run(dvc_repo, tmp_path / "dvc")
    set_epochs(snakemake_repo, 2)
    dry = run(["snakemake", "--cores", "2", "-n", "--quiet", "rules"], snakemake_repo)
    planned = set(re.findall(r"^(\w+)\s+\d+\s*$", dry, flags=re.M)) - {"total", "job"}
    assert planned == {"train", "export", "postprocess", "evaluate", "figures", "realism",
                       "all"}, dry
    run(["snakemake", "--cores", "2"], snakemake_repo)
    assert len(pd.read_csv(snakemake_repo / "reports/train_history.csv")) == 2

    set_epochs(dvc_repo, 2)
    out = run(["dvc", "repro"], dvc_repo)
    ran = set(re.findall(r"Running stage '(\w+)'", out))
    assert ran == {"train", "export", "postprocess", "evaluate", "figures", "realism"}, out
    assert len(pd.read_csv(dvc_repo / "reports/train_history.csv")) == 2


def dvc_outputs(repo: Path) -> dict[str, list[str]]:
    """Each stage's outputs; a `foreach` stage's for every item of its params list, and
    none when that list is empty (as Snakemake has no job of the rule)."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    outs: dict[str, list[str]] = {}
    for name, stage in stages.items():
        items = [None]
        if "foreach" in stage:
            items, stage = params, stage["do"]
            for key in stage_foreach_key(stages[name]).split("."):
                items = items[key]
        entries = stage.get("outs", []) + stage.get("metrics", []) + stage.get("plots", [])
        paths = [e if isinstance(e, str) else next(iter(e)) for e in entries]
        for item in items:
            outs.setdefault(name, []).extend(p.replace("${item}", str(item)) for p in paths)
    return outs


def stage_foreach_key(stage: dict) -> str:
    """`split.fold_ids` of `foreach: ${split.fold_ids}`."""
    return stage["foreach"].removeprefix("${").removesuffix("}")


def test_snakefile_and_dvc_yaml_have_the_same_stages_and_outputs(snakemake_repo):
    """Every Snakemake output belongs to the DVC stage of the same name, and back."""
    summary = run(["snakemake", "--cores", "1", "--summary"], snakemake_repo)
    produced: dict[str, set[str]] = {}
    for line in summary.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) > 2 and fields[2] not in ("all", "-"):
            produced.setdefault(fields[2].removesuffix("_subject"), set()).add(fields[0])
    outs = dvc_outputs(snakemake_repo)
    assert set(produced) == set(outs)
    for stage, files in produced.items():
        for f in files:
            assert any(f == o or f.startswith(o.rstrip("/") + "/") for o in outs[stage]), (stage, f)
        for o in outs[stage]:
            assert any(f == o or f.startswith(o + "/") for f in files), (stage, o)
