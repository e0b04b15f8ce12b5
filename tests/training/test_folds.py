"""Cross-validation training: one model per fold, their ensemble, one MLflow parent run."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from mlflow.tracking import MlflowClient

from brainseg.errors import BrainsegError
from brainseg.evaluation.folds import fold_models
from brainseg.evaluation.inference import load_checkpoint
from brainseg.models.ensemble import Ensemble
from brainseg.tracking import read_run_info
from brainseg.training.folds import combine_folds, fold_outputs
from brainseg.training.train import run_cross_validation
from tests.training.conftest import write_store

SUBJECTS = {f"S-{i}": "train" for i in range(4)}


@pytest.fixture
def cv_store(tmp_path):
    root = write_store(tmp_path, SUBJECTS)
    folds = pd.DataFrame({"subject": list(SUBJECTS), "split": "train", "fold": [0, 1, 0, 1],
                          "wt_cm3": 1.0, "stratum": 0})
    folds.to_csv(root / "splits.csv", index=False)
    return root


def test_every_fold_trains_and_their_ensemble_is_the_model(cv_store, train_params):
    train_params["split"].update(folds=2, fold_ids=[0, 1])
    train_params["train"].update(epochs=2, checkpoint="last")
    uri = f"sqlite:///{cv_store / 'mlflow.db'}"
    out = {"model_out": cv_store / "models/model.pt", "history_out": cv_store / "history.csv",
           "run_info_out": cv_store / "models/mlflow_run.json"}
    summary = run_cross_validation(params=train_params, slices_dir=cv_store / "slices",
                                   splits=cv_store / "splits.csv",
                                   folds_dir=cv_store / "models/folds", tracking_uri=uri, **out)
    assert 0 <= summary["cv_val_dice_mean"] <= 1

    history = pd.read_csv(out["history_out"])
    assert history[["fold", "epoch"]].values.tolist() == [[0, 1], [0, 2], [1, 1], [1, 2]]
    model, config = load_checkpoint(out["model_out"])
    assert isinstance(model, Ensemble) and config["ensemble"] == {"folds": [0, 1]}
    # the ensemble's weights as written (load_checkpoint folds the BatchNorms at inference)
    ensemble = torch.load(out["model_out"], weights_only=True)["state_dict"]
    for fold in (0, 1):
        fold_ckpt = torch.load(fold_outputs(cv_store / "models/folds", fold)["model"],
                               weights_only=True)
        assert fold_ckpt["epoch"] == 2  # checkpoint: last
        assert all(torch.equal(ensemble[f"members.{fold}.{k}"], v)
                   for k, v in fold_ckpt["state_dict"].items())
    pairs = fold_models(model, pd.read_csv(cv_store / "splits.csv"), "splits.csv")
    assert [(f, s) for f, _, s in pairs] == [(0, ["S-0", "S-2"]), (1, ["S-1", "S-3"])]

    client = MlflowClient(uri)
    parent = client.get_run(read_run_info(out["run_info_out"])["run_id"])
    assert parent.data.tags["cross_validation"] == "2 folds"
    assert parent.data.metrics["cv_val_dice_mean"] == pytest.approx(summary["cv_val_dice_mean"])
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(c.data.tags["fold"] for c in children) == ["0", "1"]
    info = read_run_info(out["run_info_out"])
    assert client.get_model_version(info["model_name"], info["model_version"]).run_id == \
        parent.info.run_id

    # the ensemble's bytes are a function of the fold models only
    first = out["model_out"].read_bytes()
    combine_folds(train_params, cv_store / "models/folds", 2, tracking_uri=uri, **out)
    assert out["model_out"].read_bytes() == first


def test_combining_a_fold_that_is_not_trained_names_it(cv_store, train_params):
    with pytest.raises(BrainsegError, match="fold 0 is not trained"):
        combine_folds(train_params, cv_store / "models/folds", 2, cv_store / "m.pt",
                      cv_store / "h.csv", cv_store / "r.json", "sqlite:///x.db")


def test_a_split_without_folds_is_not_a_cross_validation(store, train_params, tmp_path):
    with pytest.raises(BrainsegError, match="no cross-validation folds"):
        run_cross_validation(params=train_params, slices_dir=store / "slices",
                             splits=store / "splits.csv", folds_dir=tmp_path / "folds",
                             model_out=tmp_path / "m.pt", history_out=tmp_path / "h.csv",
                             run_info_out=tmp_path / "r.json", tracking_uri="sqlite:///x.db")
