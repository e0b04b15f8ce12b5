"""The MLflow run of one training: params, tags, per-epoch metrics, artifacts, the model.

The trained model is logged with `mlflow.pytorch.log_model` (signature and input
example) and registered under `train.registered_model`; `evaluate` later tags that
model version with the test metrics.
"""

from __future__ import annotations

import copy
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainseg.params import flatten
from brainseg.tracking import (
    dvc_dir_hash,
    git_commit,
    params_changes,
    run_name,
    setup_experiment,
    write_run_info,
)

log = logging.getLogger(__name__)
PARENT_TAG = "mlflow.parentRunId"  # MLflow's own tag: the UI nests the fold runs under it


class TrainingRun:
    """Context manager around `mlflow.start_run`; the run is marked FAILED on an exception.

    Args:
        uri: tracking URI.
        experiment: experiment name (created once if missing).
        params: the whole validated params, logged flattened (`train.optimizer.lr`, ...).
        data_dir: training data folder; its DVC hash is the `data_version` tag.
        run_id: an existing run to continue (`train --resume`), or None for a new run.
    """

    def __init__(self, uri: str, experiment: str, params: dict[str, Any], data_dir: Path,
                 run_id: str | None = None, fold: int | None = None) -> None:
        import mlflow

        self.mlflow = mlflow
        self.experiment = experiment
        self.experiment_id = setup_experiment(uri, experiment)
        self.params, self.data_dir = params, data_dir
        self.resumed = run_id is not None
        self.run_id = run_id or ""
        self.fold = fold

    def __enter__(self) -> TrainingRun:
        if self.resumed:
            self.mlflow.start_run(run_id=self.run_id)
            self.mlflow.set_tag("resumed", "true")
            return self
        run = self.mlflow.start_run(experiment_id=self.experiment_id,
                                    run_name=run_name(self.params, "train", self.fold))
        self.run_id = run.info.run_id
        self.mlflow.log_params(flatten(self.params))
        tags = {
            "git_commit": git_commit(),
            "data_version": dvc_dir_hash(self.data_dir),
            "data_dir": self.data_dir.as_posix(),
            "stage": "train",
            "params_changed": ", ".join(params_changes(self.params, "train"))[:5000] or "none",
        }
        if self.fold is not None:
            tags["fold"] = str(self.fold)
        if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run` for its stage commands
            tags["dvc_experiment"] = os.environ["DVC_EXP_NAME"]
        self.mlflow.set_tags(tags)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        """End the run: FINISHED, KILLED when stopped (Ctrl-C, SIGTERM), FAILED on an error.

        After an exception, a store that cannot take the status (the signal may have cut a
        write to it) is logged and the exception goes on: the stop or the error is what the
        command reports, not the store's failure to record it."""
        if exc_type is None:
            self.mlflow.end_run(status="FINISHED")
            return
        status = "KILLED" if issubclass(exc_type, KeyboardInterrupt) else "FAILED"
        try:
            self.mlflow.end_run(status=status)
        except Exception as error:  # the exception in flight comes first
            log.warning("MLflow run %s not marked %s: %s", self.run_id, status, error)

    def log_epoch(self, row: dict[str, float]) -> None:
        """Log one history row (step = epoch), without its NaN cells (not validated, or a
        region the labels do not annotate)."""
        epoch = int(row["epoch"])
        self.mlflow.log_metrics({k: float(v) for k, v in row.items()
                                 if k != "epoch" and not math.isnan(float(v))}, step=epoch)

    def relog_missing(self, history: list[dict[str, float]]) -> None:
        """After a resume: log the history rows that the killed process had not logged yet."""
        client = self.mlflow.tracking.MlflowClient()
        logged = {m.step for m in client.get_metric_history(self.run_id, "train_loss")}
        for row in history:
            if int(row["epoch"]) not in logged:
                self.log_epoch(row)

    def log_model(self, model: torch.nn.Module, config: dict[str, Any], name: str,
                  example: np.ndarray) -> dict[str, str]:
        """Log and register the trained model in this run (see `log_model`)."""
        return log_model(model, config, name, example)

    def finish(self, best: dict[str, float], model: Path, history: Path, run_info: Path,
               registered: dict[str, str]) -> None:
        """Log the best epoch, the checkpoint and the history CSV (the `figures` stage draws
        its learning curves and logs them to this run as `figures/learning_curves.png`)."""
        self.mlflow.log_metrics({f"best_{k}": float(v) for k, v in best.items()})
        self.mlflow.log_artifact(str(model), artifact_path="checkpoint")
        self.mlflow.log_artifact(str(history), artifact_path="history")
        write_run_info(run_info, self.run_id, self.experiment, **registered)


def log_model(model: torch.nn.Module, config: dict[str, Any], name: str,
              example: np.ndarray) -> dict[str, str]:
    """Log the model (on CPU, with its brainseg config), register it; returns name/version.

    Pickled (not exported to a fixed-shape graph), so that the loaded module is a
    brainseg U-Net that takes any slice size and carries `brainseg_config` (the
    checkpoint's config, also in the MLmodel metadata), which
    `brainseg predict --model models:/<name>/<version>` reads.
    """
    import mlflow
    import mlflow.pytorch
    from mlflow.models import infer_signature

    cpu = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    cpu.brainseg_config = config
    with torch.no_grad():
        output = cpu(torch.from_numpy(example)).numpy()
    info = mlflow.pytorch.log_model(
        cpu, name="model", signature=infer_signature(example, output),
        input_example=example, registered_model_name=name, serialization_format="pickle",
        metadata={"brainseg_config": config},
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "brainseg"],
    )
    version = str(info.registered_model_version)
    log.info("registered model %s version %s (logged as %s)", name, version, info.model_uri)
    return {"model_name": name, "model_version": version,
            "model_uri": f"models:/{name}/{version}"}


def log_parent_run(uri: str, params: dict[str, Any], fold_run_infos: list[Path],
                   model: Path, history: Path, run_info_out: Path,
                   summary: dict[str, float]) -> None:
    """The MLflow parent run of a cross-validation: the fold runs become its children.

    Logs the params, the cross-validation summary, the ensemble checkpoint and the
    combined history, registers the ensemble as `train.registered_model`, and writes
    its run info (read by postprocess, evaluate and figures, which log into it).
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    from brainseg.models.ensemble import build_network
    from brainseg.tracking import read_run_info

    cfg = params["train"]
    experiment_id = setup_experiment(uri, cfg["experiment"])
    children = [read_run_info(p)["run_id"] for p in fold_run_infos]
    ckpt = torch.load(model, map_location="cpu", weights_only=True)
    network = build_network(ckpt["config"])
    network.load_state_dict(ckpt["state_dict"])
    config = ckpt["config"]
    size = config["extract"]["image_size"]
    spatial = (tuple(config["patch"]["size"]) if config["model"].get("dims", 2) == 3
               else (size, size))  # a 3D model's example: one patch
    example = np.zeros((1, config["model"].get("in_channels", 4), *spatial), np.float32)
    name = run_name(params, "train").replace("train", f"train {len(children)}-fold ensemble", 1)
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params(flatten(params))
        mlflow.set_tags({"git_commit": git_commit(), "stage": "train", "cross_validation":
                         f"{len(children)} folds", "fold_runs": ",".join(children)})
        if os.environ.get("DVC_EXP_NAME"):
            mlflow.set_tag("dvc_experiment", os.environ["DVC_EXP_NAME"])
        mlflow.log_metrics(summary)
        mlflow.log_artifact(str(model), artifact_path="checkpoint")
        mlflow.log_artifact(str(history), artifact_path="history")
        registered = log_model(network, ckpt["config"], cfg["registered_model"], example)
        parent = run.info.run_id
    client = MlflowClient(tracking_uri=uri)
    for child in children:
        client.set_tag(child, PARENT_TAG, parent)
    write_run_info(run_info_out, parent, cfg["experiment"], **registered)

