"""A 3D U-Net (`train.model.dims: 3`) through Snakemake and through DVC, cross-validated on
the smoke params, up to the scores and the ONNX model: the two runners train every fold
independently, in copies of their own, and write the same model bytes (a second training
gives the same weights)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import digest
from tests.integration.conftest import copy_repo, run

pytestmark = pytest.mark.integration
SHARED = ["models/folds/0/model.pt", "models/folds/1/model.pt", "models/model.pt",
          "reports/train_history.csv", "reports/metrics.json", "reports/per_subject.csv"]
TARGETS = ["reports/metrics.json", "models/model.onnx"]


def repo_3d(path: Path) -> Path:
    repo = copy_repo(path)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["split"].update(folds=2, fold_ids=[0, 1], test_fraction=0.2)
    params["train"].update(checkpoint="last", epochs=1, batch_size=2, slices_per_epoch=4,
                           patch_size=[32, 32, 32])
    params["train"]["model"].update(dims=3, base_channels=4, depth=2)
    params["train"]["augment"]["elastic"]["p"] = 0.0
    params["postprocess"]["flip_tta"] = False  # 8 sliding windows per subject: slow on CPU
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "3D U-Net"], repo)
    return repo


@pytest.fixture(scope="module")
def runs_3d(tmp_path_factory) -> tuple[Path, Path]:
    snake = repo_3d(tmp_path_factory.mktemp("3d-snakemake"))
    dvc = repo_3d(tmp_path_factory.mktemp("3d-dvc"))
    # the scores and the ONNX model: the figures and the realism stage of a 3D model only
    # predict with it, as tests/test_cli_3d.py does, and take minutes of CPU here
    run(["snakemake", "--cores", "2", *TARGETS], snake, timeout=1800)
    out = run(["dvc", "repro", "evaluate", "export"], dvc, timeout=1800)
    assert {"train_fold@0", "export", "evaluate"} <= set(
        re.findall(r"Running stage '([\w@]+)'", out))
    return snake, dvc


def test_both_runners_write_the_same_3d_model_and_scores(runs_3d):
    snake, dvc = runs_3d
    for rel in SHARED:
        assert digest(snake / rel) == digest(dvc / rel), f"{rel} differs"
    ckpt = torch.load(snake / "models" / "model.pt", weights_only=True)
    assert ckpt["config"]["model"]["dims"] == 3 and ckpt["config"]["ensemble"]
    assert (snake / "models" / "model.onnx").stat().st_size > 0
    metrics = json.loads((snake / "reports" / "metrics.json").read_text())
    assert 0 <= metrics["cv"]["dice"]["mean"] <= 1

