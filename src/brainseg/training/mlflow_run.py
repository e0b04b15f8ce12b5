"""The MLflow run of one training: params, tags, per-epoch metrics and artifacts."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from brainseg.params import flatten
from brainseg.tracking import dvc_dir_hash, git_commit, setup_experiment, write_run_info


class TrainingRun:
    """Context manager around `mlflow.start_run`; the run is marked FAILED on an exception.

    Args:
        uri: tracking URI.
        experiment: experiment name (created once if missing).
        params: the whole validated params, logged flattened (`train.optimizer.lr`, ...).
        data_dir: training data folder; its DVC hash is the `data_version` tag.
    """

    def __init__(self, uri: str, experiment: str, params: dict[str, Any], data_dir: Path) -> None:
        import mlflow

        self.mlflow = mlflow
        self.experiment = experiment
        self.experiment_id = setup_experiment(uri, experiment)
        self.params, self.data_dir = params, data_dir
        self.run_id = ""

    def __enter__(self) -> TrainingRun:
        run = self.mlflow.start_run(experiment_id=self.experiment_id)
        self.run_id = run.info.run_id
        self.mlflow.log_params(flatten(self.params))
        self.mlflow.set_tags({
            "git_commit": git_commit(),
            "data_version": dvc_dir_hash(self.data_dir),
            "data_dir": self.data_dir.as_posix(),
            "stage": "train",
        })
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.mlflow.end_run(status="FAILED" if exc_type else "FINISHED")

    def log_epoch(self, row: dict[str, float]) -> None:
        """Log one history row (step = epoch)."""
        epoch = int(row["epoch"])
        self.mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=epoch)

    def finish(self, best: dict[str, float], model: Path, history: Path, run_info: Path) -> None:
        """Log the best epoch, the checkpoint, the history and its learning curves."""
        from brainseg.reporting.plots import plot_learning_curves

        self.mlflow.log_metrics({f"best_{k}": float(v) for k, v in best.items()})
        self.mlflow.log_artifact(str(model), artifact_path="model")
        self.mlflow.log_artifact(str(history), artifact_path="history")
        with tempfile.TemporaryDirectory() as tmp:
            png = Path(tmp) / "learning_curves.png"
            plot_learning_curves(pd.read_csv(history), png)
            self.mlflow.log_artifact(str(png), artifact_path="history")
        write_run_info(run_info, self.run_id, self.experiment)
