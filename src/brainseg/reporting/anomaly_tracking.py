"""The MLflow run of the anomaly stage: params, tags, per-epoch losses, metrics, artifacts.

One run per `brainseg anomaly`, in the experiment of `train.experiment`, named and tagged
as the training's runs are (`run_name`, `git_commit`, the slice store's DVC hash); the
per-epoch loss of each training is the metric `loss` (`fold<k>_loss` with folds), the
scores are `<test|cv>_<metric>_<mean|pooled>`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from brainseg.params import flatten
from brainseg.tracking import (
    dvc_dir_hash,
    git_commit,
    params_changes,
    run_name,
    setup_experiment,
)

log = logging.getLogger(__name__)


def flat_scores(metrics: dict[str, Any]) -> dict[str, float]:
    """`test_auroc_mean`-style numbers of an anomaly.json content (nulls left out)."""
    out = {}
    for key in ("cv", "test"):
        for metric, stats in metrics.get(key, {}).items():
            if isinstance(stats, dict):
                out.update({f"{key}_{metric}_{s}": float(v) for s, v in stats.items()
                            if s in ("mean", "pooled") and v is not None})
    return out


def log_anomaly_run(uri: str, params: dict[str, Any], slices_dir: Path,
                    models: list[dict[str, Any]], metrics: dict[str, Any],
                    files: list[Path]) -> str:
    """Record the stage's MLflow run; returns its id.

    Args:
        uri: tracking URI.
        params: the validated params (logged flattened).
        slices_dir: the slice store (its DVC hash is the `data_version` tag).
        models: per training, its `fold` and `history` ({epoch, loss} rows).
        metrics: the anomaly.json content.
        files: artifacts (metrics, table, model, figures folder).
    """
    import mlflow

    experiment_id = setup_experiment(uri, params["train"]["experiment"])
    with mlflow.start_run(experiment_id=experiment_id,
                          run_name=run_name(params, "anomaly")) as run:
        mlflow.log_params(flatten(params))
        tags = {"stage": "anomaly", "git_commit": git_commit(),
                "data_version": dvc_dir_hash(slices_dir), "data_dir": slices_dir.as_posix(),
                "params_changed": ", ".join(params_changes(params, "anomaly"))[:5000] or "none"}
        if os.environ.get("DVC_EXP_NAME"):
            tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
        mlflow.set_tags(tags)
        for model in models:
            name = "loss" if model["fold"] is None else f"fold{model['fold']}_loss"
            for row in model["history"]:
                mlflow.log_metric(name, row["loss"], step=int(row["epoch"]))
        mlflow.log_metrics(flat_scores(metrics))
        for path in files:
            if path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=f"anomaly/{path.name}")
            else:
                mlflow.log_artifact(str(path), artifact_path="anomaly")
    log.info("anomaly: MLflow run %s at %s", run.info.run_id, uri)
    return run.info.run_id
