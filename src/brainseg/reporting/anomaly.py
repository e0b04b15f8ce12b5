"""Stage `anomaly` (optional): a 3D autoencoder's reconstruction error as a tumour map.

Trained on tumour-free brain only (`brainseg.training.anomaly`: the training subjects'
brain minus their dilated tumour, plus `anomaly.healthy_synthetic` tumour-free synthetic
subjects), the autoencoder reconstructs healthy tissue well and a tumour badly; its
voxel-wise error (`brainseg.evaluation.anomaly`) is scored against the whole tumour.

Who trains, tunes and is scored follows `evaluate` (`anomaly_rounds`):

- one train/val/test split: trained on `train`, threshold chosen on `val`, `test` scored;
- k cross-validation folds: for each fold f, trained on the folds other than f and
  f + 1 (mod k), threshold chosen on fold f + 1, fold f scored (out-of-fold: every
  subject once, by a model and a threshold that never saw it); a test set apart is
  scored by the model of the folds other than 0, its threshold chosen on fold 0.

Writes the models (`--model-out`), the metrics JSON (`"test"` or `"cv"`, as evaluate's),
one row per scored subject (CSV) and figures (`--figures-dir`).
"""

from __future__ import annotations

import argparse
import io
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from brainseg.data.healthy import healthy_slices
from brainseg.data.modalities import MODALITIES
from brainseg.data.split import held_out, n_folds, read_splits
from brainseg.errors import BrainsegError
from brainseg.evaluation.anomaly import Scores, choose_threshold, error_map, reconstruct
from brainseg.io.atomic import atomic_dir, write_bytes
from brainseg.reporting.anomaly_figures import plot_reconstruction, plot_roc
from brainseg.reporting.anomaly_tracking import log_anomaly_run
from brainseg.runtime import add_device_arguments, resolve_device, set_threads
from brainseg.tracking import add_tracking_argument, tracking_uri
from brainseg.training.anomaly import (
    Volume,
    as_volume,
    autoencoder_config,
    channel_indices,
    store_volume,
    train_autoencoder,
    training_mask,
)
from brainseg.training.data import slice_channels

log = logging.getLogger(__name__)
N_FIGURES = 3  # scored subjects drawn (the first ones by id)


@dataclass(frozen=True)
class Round:
    """One training: its fold (None: no cross-validation; -1: the test set of one), who
    trains, who chooses the threshold, who is scored."""

    fold: int | None
    train: list[str]
    val: list[str]
    scored: list[str]


def anomaly_rounds(splits: pd.DataFrame) -> list[Round]:
    """The trainings of the stage, as the module docstring says (subjects sorted)."""
    def of(split: str) -> list[str]:
        return sorted(splits.loc[splits["split"] == split, "subject"])

    k = n_folds(splits)
    if k < 2:
        return [Round(None, of("train"), of("val"), of("test"))]
    folds = [held_out(splits, f) for f in range(k)]

    def others(*skip: int) -> list[str]:
        return sorted(s for f in range(k) if f not in skip for s in folds[f])

    rounds = [Round(f, others(f, (f + 1) % k), folds[(f + 1) % k], folds[f]) for f in range(k)]
    return rounds + ([Round(-1, others(0), folds[0], of("test"))] if of("test") else [])


class Volumes:
    """The store's subjects and the healthy synthetic ones, loaded once, as `Volume`s."""

    def __init__(self, params: dict[str, Any], slices_dir: Path, subjects: list[str]) -> None:
        self.params, self.slices_dir = params, slices_dir
        wanted = list(params["anomaly"]["modalities"])
        self.modalities, _ = slice_channels([slices_dir / s for s in subjects])
        self.channels = channel_indices(self.modalities, wanted, str(slices_dir))
        self.names = [self.modalities[c] for c in self.channels]
        self.loaded: dict[str, Volume] = {}

    def __getitem__(self, subject: str) -> Volume:
        if subject not in self.loaded:
            self.loaded[subject] = store_volume(self.slices_dir / subject, self.channels)
        return self.loaded[subject]

    def healthy(self) -> list[Volume]:
        channels = channel_indices(MODALITIES, self.names, "the synthetic generator")
        return [as_volume(f"healthy-{k}", *healthy_slices(self.params, k), channels)
                for k in range(self.params["anomaly"]["healthy_synthetic"])]


def _train(rnd: Round, volumes: Volumes, healthy: list[Volume], params: dict[str, Any],
           device: str):
    cfg = params["anomaly"]
    train = [volumes[s] for s in rnd.train] + healthy
    if not train:
        raise BrainsegError(f"anomaly: fold {rnd.fold} has no training volume (no training "
                            "subject and anomaly.healthy_synthetic: 0)")
    masks = [training_mask(v, cfg["tumour_margin"]) for v in train]
    where = "" if rnd.fold is None else f" fold {rnd.fold}"
    log.info("anomaly%s: training on %d subjects + %d healthy synthetic", where,
             len(rnd.train), len(healthy))
    return train_autoencoder(train, masks, cfg, params["base"]["seed"], device,
                             desc=f"anomaly{where}")


def _map(model, volume: Volume, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    recon = reconstruct(model, volume.image)
    return recon, error_map(volume.image, recon, volume.brain, sigma)


def _threshold(model, rnd: Round, volumes: Volumes, sigma: float) -> tuple[float, float]:
    if not rnd.val:
        raise BrainsegError(f"anomaly: fold {rnd.fold} has no validation subject to choose "
                            "the threshold on")
    maps = [_map(model, volumes[s], sigma)[1] for s in rnd.val]
    return choose_threshold(maps, [volumes[s].tumour for s in rnd.val],
                            [volumes[s].brain for s in rnd.val])


def _score_round(model, rnd: Round, volumes: Volumes, scores: Scores, threshold: float,
                 drawn: set[str], fig_dir: Path, params: dict[str, Any]) -> None:
    """Score the round's subjects; draw those of `drawn` (FLAIR, else the first channel)."""
    c = volumes.names.index("flair") if "flair" in volumes.names else 0
    for subject in tqdm(rnd.scored, desc="anomaly score", unit="subject"):
        volume = volumes[subject]
        recon, error = _map(model, volume, params["anomaly"]["smoothing_sigma"])
        scores.add(subject, rnd.fold, error[volume.brain], volume.tumour[volume.brain],
                   threshold)
        if subject in drawn:
            plot_reconstruction(volume.image[c], recon[c], error, volume.tumour, volume.brain,
                                volumes.names[c], subject, fig_dir / f"{subject}.png",
                                params["figures"]["dpi"])


def run_anomaly(*, params: dict[str, Any], slices_dir: str | Path, splits: str | Path,
                model_out: str | Path, metrics_out: str | Path, per_subject_out: str | Path,
                figures_dir: str | Path, device: str = "cpu", tracking_uri: str | None = None
                ) -> dict[str, Any]:
    """Train, tune and score the anomaly autoencoder; returns the metrics JSON content.

    Args:
        params: validated params (`anomaly`, `base.seed`, `figures.dpi`; for the healthy
            synthetic subjects `download.synthetic`, `extract`, `normalize`).
        slices_dir: the training store (data/slices).
        splits: data/splits.csv (a train/val/test split or cross-validation folds).
        model_out, metrics_out, per_subject_out, figures_dir: the outputs (module docstring).
        device: torch device.
        tracking_uri: also record the run in MLflow there (`log_anomaly_run`); None: not.

    Raises:
        BrainsegError: a store, a split or a modality that cannot give a training.
    """
    slices_dir, figures_dir = Path(slices_dir), Path(figures_dir)
    table = read_splits(splits)
    volumes = Volumes(params, slices_dir, sorted(table["subject"]))
    healthy = volumes.healthy()
    rounds = anomaly_rounds(table)
    drawn = set(sorted(s for r in rounds for s in r.scored)[:N_FIGURES])
    scores, models = Scores(), []
    with atomic_dir(figures_dir) as fig_dir:
        for rnd in rounds:
            model, history = _train(rnd, volumes, healthy, params, device)
            threshold, val_dice = _threshold(model, rnd, volumes,
                                             params["anomaly"]["smoothing_sigma"])
            log.info("anomaly: threshold %.4g (mean val WT Dice %.3f)", threshold, val_dice)
            models.append({"fold": rnd.fold, "threshold": threshold, "val_dice_WT": val_dice,
                           "train": rnd.train, "history": history,
                           "state_dict": model.state_dict()})
            _score_round(model, rnd, volumes, scores, threshold, drawn, fig_dir, params)
        metrics = scores.write(models, per_subject_out, metrics_out)
        pooled = metrics["cv" if "cv" in metrics else "test"]["auroc"]["pooled"]
        plot_roc(scores.curves(), float("nan") if pooled is None else pooled,
                 fig_dir / "roc.png", params["figures"]["dpi"])
    _save_models(models, volumes.names, params["anomaly"], model_out)
    if tracking_uri is not None:
        log_anomaly_run(tracking_uri, params, slices_dir, models, metrics,
                        [Path(metrics_out), Path(per_subject_out), Path(model_out), figures_dir])
    return metrics


def _save_models(models: list[dict[str, Any]], modalities: list[str], cfg: dict[str, Any],
                 path: str | Path) -> None:
    """One file: the autoencoder config, its modalities and each training's weights."""
    buffer = io.BytesIO()
    config = autoencoder_config(cfg, len(modalities))
    torch.save({"config": config, "modalities": modalities, "models": models}, buffer)
    write_bytes(path, buffer.getvalue())


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slices-dir", required=True, type=Path,
                        help="training store of normalize (data/slices)")
    parser.add_argument("--splits", required=True, type=Path, help="data/splits.csv")
    parser.add_argument("--model-out", required=True, type=Path,
                        help="the trained autoencoders (models/autoencoder.pt)")
    parser.add_argument("--metrics-out", required=True, type=Path,
                        help="AUROC, average precision and WT Dice (reports/anomaly.json)")
    parser.add_argument("--per-subject-out", required=True, type=Path,
                        help="one row per scored subject (reports/anomaly_subjects.csv)")
    parser.add_argument("--figures-dir", required=True, type=Path,
                        help="reconstructions of a few scored subjects and the ROC curve "
                        "(reports/anomaly)")
    add_tracking_argument(parser)
    add_device_arguments(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    set_threads(args.threads)
    run_anomaly(params=params, slices_dir=args.slices_dir, splits=args.splits,
                model_out=args.model_out, metrics_out=args.metrics_out,
                per_subject_out=args.per_subject_out, figures_dir=args.figures_dir,
                device=resolve_device(args.device),
                tracking_uri=tracking_uri(args.tracking_uri))
