"""Cross-validation trainings (`split.folds: k`): one model per fold, their ensemble.

Fold f trains on the other folds' subjects and validates on its own
(`brainseg train --fold f`, one Snakemake job per fold), writing into
`<folds-dir>/<f>/` the checkpoint, the MLflow run info and the history. Then
`combine_folds` writes the run's model: one checkpoint holding every fold model as
the members of an `Ensemble` (mean of probabilities), the folds' histories in one CSV
(with a `fold` column), and one MLflow parent run whose children are the fold runs.
Every output is a pure function of the fold outputs, so the per-fold jobs of
Snakemake and of DVC (a `train_fold` stage per fold, then `train`) give the same bytes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from brainseg.data.labels import REGIONS
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_file
from brainseg.training.state import save_torch

log = logging.getLogger(__name__)


def fold_outputs(folds_dir: str | Path, fold: int) -> dict[str, Path]:
    """Where fold `fold` writes its checkpoint, MLflow run info and history."""
    d = Path(folds_dir) / str(fold)
    return {"model": d / "model.pt", "run_info": d / "mlflow_run.json",
            "history": d / "train_history.csv"}


def ensemble_checkpoint(checkpoints: list[dict[str, Any]], folds: list[int]) -> dict[str, Any]:
    """One checkpoint whose model is the `Ensemble` of the fold checkpoints' models."""
    config = dict(checkpoints[0]["config"])
    for fold, ckpt in zip(folds, checkpoints, strict=True):
        if ckpt["config"] != checkpoints[0]["config"]:
            raise BrainsegError(f"fold {fold}: its model config differs from fold {folds[0]}'s")
    config["ensemble"] = {"folds": list(folds)}
    state = {f"members.{i}.{key}": value for i, ckpt in enumerate(checkpoints)
             for key, value in ckpt["state_dict"].items()}
    return {"state_dict": state, "config": config,
            "epoch": [int(c["epoch"]) for c in checkpoints],
            "val_dice_mean": float(np.mean([c["val_dice_mean"] for c in checkpoints]))}


def combine_histories(histories: list[pd.DataFrame], folds: list[int]) -> pd.DataFrame:
    """The folds' per-epoch histories in one table, `fold` first."""
    return pd.concat([h.assign(fold=f)[["fold", *h.columns]] for f, h in
                      zip(folds, histories, strict=True)], ignore_index=True)


def read_fold(folds_dir: Path, fold: int) -> tuple[dict[str, Any], pd.DataFrame, Path]:
    """Checkpoint, history and run-info path of a trained fold (refusing a missing one)."""
    paths = fold_outputs(folds_dir, fold)
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise BrainsegError(f"fold {fold} is not trained: missing {', '.join(missing)} "
                            f"(run `brainseg train --fold {fold}` first)")
    ckpt = torch.load(paths["model"], map_location="cpu", weights_only=True)
    return ckpt, pd.read_csv(paths["history"]), paths["run_info"]


def cv_summary(checkpoints: list[dict[str, Any]], histories: list[pd.DataFrame]
               ) -> dict[str, float]:
    """Validation Dice of the kept epoch of each fold, averaged over folds (MLflow metrics)."""
    rows = []
    for ckpt, history in zip(checkpoints, histories, strict=True):
        rows.append(history.loc[history["epoch"] == int(ckpt["epoch"])].iloc[0])
    table = pd.DataFrame(rows)
    out = {f"cv_val_dice_{r}": float(table[f"val_dice_{r}"].mean()) for r in REGIONS}
    out["cv_val_dice_mean"] = float(table["val_dice_mean"].mean())
    out["cv_val_dice_mean_std"] = float(table["val_dice_mean"].std(ddof=1))
    return out


def combine_folds(params: dict[str, Any], folds_dir: str | Path, n_folds: int,
                  model_out: str | Path, history_out: str | Path, run_info_out: str | Path,
                  tracking_uri: str) -> dict[str, float]:
    """Write the ensemble checkpoint, the combined history and the MLflow parent run.

    Returns:
        The cross-validation summary (mean over folds of the kept epochs' val Dice).
    """
    folds = list(range(n_folds))
    read = [read_fold(Path(folds_dir), f) for f in folds]
    checkpoints, histories, run_infos = (list(x) for x in zip(*read, strict=True))
    save_torch(ensemble_checkpoint(checkpoints, folds), Path(model_out))
    with atomic_file(history_out) as tmp:
        combine_histories(histories, folds).to_csv(tmp, index=False, lineterminator="\n")
    summary = cv_summary(checkpoints, histories)
    from brainseg.training.mlflow_run import log_parent_run

    log_parent_run(tracking_uri, params, run_infos, Path(model_out), Path(history_out),
                   Path(run_info_out), summary)
    log.info("ensemble of %d folds -> %s; CV val Dice %s", n_folds, model_out,
             {k: round(v, 4) for k, v in summary.items()})
    return summary
