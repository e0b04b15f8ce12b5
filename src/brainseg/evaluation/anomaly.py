"""Scoring of the autoencoder's anomaly map: reconstruction, error, threshold, metrics.

The anomaly map of a subject is its voxel-wise reconstruction error (the mean over the
modalities of the squared difference), 0 outside the brain, smoothed with a Gaussian of
`anomaly.smoothing_sigma` voxels and masked to the brain again. Every metric counts the
voxels inside the brain only, against the whole tumour (labels > 0):

- AUROC (`sklearn.metrics.roc_auc_score`) and average precision of the map;
- WT Dice of the map thresholded at the error chosen on other subjects
  (`choose_threshold`: the candidate with the best mean Dice).

Policy for a subject without tumour: AUROC and average precision are undefined (NaN,
written as null), its Dice is 1 when nothing is above the threshold, else 0.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from sklearn.metrics import average_precision_score, roc_auc_score

from brainseg.io.atomic import atomic_file, write_text
from brainseg.models.autoencoder import Autoencoder3d, pad_to

log = logging.getLogger(__name__)
METRICS = ("auroc", "average_precision", "dice_WT")

#: quantiles of the validation subjects' brain errors tried as thresholds (fine at the top,
#: where a tumour of a few percent of the brain lies)
THRESHOLD_QUANTILES = np.unique(np.concatenate([
    np.linspace(0.5, 0.999, 500), 1 - np.logspace(-5, -3, 20)]))


@torch.no_grad()
def reconstruct(model: Autoencoder3d, image: np.ndarray) -> np.ndarray:
    """The reconstruction float32 (m, z, h, w) of a whole volume `image` (m, z, h, w).

    The volume is zero-padded at the end of each axis to a multiple of 2**depth and run
    in one pass (the network is fully convolutional; eval mode).
    """
    model.eval()
    shape = image.shape[1:]
    target = pad_to(shape, model.depth)
    x = np.pad(image, [(0, 0)] + [(0, t - s) for s, t in zip(shape, target, strict=True)])
    out = model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])[0].numpy()
    return out[:, :shape[0], :shape[1], :shape[2]]


def error_map(image: np.ndarray, recon: np.ndarray, brain: np.ndarray, sigma: float
              ) -> np.ndarray:
    """Float32 (z, h, w): mean squared error over the channels of (m, z, h, w) arrays,
    0 outside `brain`, Gaussian-smoothed (`sigma` voxels; 0: not) and masked again."""
    error = np.where(brain, ((image - recon) ** 2).mean(axis=0), 0).astype(np.float32)
    if sigma > 0:
        error = ndi.gaussian_filter(error, sigma)
    return np.where(brain, error, 0).astype(np.float32)


def dice_curve(errors: np.ndarray, tumour: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """WT Dice of `errors > t` for every t of `thresholds`, among the voxels given.

    Args:
        errors: float (n,) the map's values at the brain voxels.
        tumour: bool (n,) whole tumour at the same voxels.
        thresholds: (k,) candidate thresholds.

    Returns:
        float (k,) Dice; 1 where both the prediction and the tumour are empty.
    """
    above_all = len(errors) - np.searchsorted(np.sort(errors), thresholds, side="right")
    above_tumour = tumour.sum() - np.searchsorted(np.sort(errors[tumour]), thresholds,
                                                  side="right")
    denominator = above_all + tumour.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, 2 * above_tumour / np.maximum(denominator, 1), 1.0)


def choose_threshold(maps: list[np.ndarray], tumours: list[np.ndarray],
                     brains: list[np.ndarray]) -> tuple[float, float]:
    """The threshold with the best mean WT Dice over subjects, and that mean.

    Candidates: the `THRESHOLD_QUANTILES` of all the subjects' brain errors pooled.

    Args:
        maps, tumours, brains: per subject, (z, h, w) map, whole tumour, brain.
    """
    values = [m[b] for m, b in zip(maps, brains, strict=True)]
    candidates = np.unique(np.quantile(np.concatenate(values), THRESHOLD_QUANTILES))
    curves = [dice_curve(v, t[b], candidates)
              for v, t, b in zip(values, tumours, brains, strict=True)]
    mean = np.mean(curves, axis=0)
    best = int(np.argmax(mean))
    return float(candidates[best]), float(mean[best])


def map_scores(values: np.ndarray, tumour: np.ndarray, threshold: float) -> dict[str, float]:
    """AUROC, average precision and WT Dice at `threshold` of brain-voxel values (n,)
    against the whole tumour (n,); AUROC and AP are NaN without tumour (or without brain
    outside it)."""
    both = 0 < tumour.sum() < len(tumour)
    return {
        "auroc": float(roc_auc_score(tumour, values)) if both else float("nan"),
        "average_precision": float(average_precision_score(tumour, values)) if both
        else float("nan"),
        "dice_WT": float(dice_curve(values, tumour, np.array([threshold]))[0]),
    }


def summarize(rows: pd.DataFrame, pooled: dict[str, float]) -> dict[str, Any]:
    """Per-subject mean, std and median (NaN left out) and the pooled value of each metric."""
    out: dict[str, Any] = {"n_subjects": len(rows)}
    for metric in METRICS:
        values = rows[metric].dropna()
        out[metric] = {"mean": float(values.mean()) if len(values) else None,
                       "std": float(values.std(ddof=0)) if len(values) else None,
                       "median": float(values.median()) if len(values) else None,
                       "pooled": _finite(pooled[metric])}
    return out


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


class Scores:
    """The scored subjects' rows and brain-voxel arrays, in the order they were scored."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.arrays: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # values, WT, above

    def add(self, subject: str, fold: int | None, values: np.ndarray, tumour: np.ndarray,
            threshold: float) -> None:
        """Score one subject's brain-voxel map `values` (n,) against `tumour` (n,)."""
        self.rows.append({"subject": subject, **({} if fold is None else {"fold": fold}),
                          **map_scores(values, tumour, threshold), "threshold": threshold,
                          "tumour_voxels": int(tumour.sum()), "brain_voxels": len(values)})
        self.arrays.append((values, tumour, values > threshold))

    def pooled(self, chosen: list[int]) -> dict[str, float]:
        """The metrics of rows `chosen` with all their voxels pooled (each at its own
        training's threshold)."""
        values, tumour, above = (np.concatenate([self.arrays[i][k] for i in chosen])
                                 for k in range(3))
        scores = map_scores(values, tumour, 0.0)
        scores["dice_WT"] = float(2 * (above & tumour).sum() / max(above.sum() + tumour.sum(), 1))
        return scores

    def curves(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per subject and pooled: (values, tumour), for `plot_roc`."""
        out = {row["subject"]: arrays[:2]
               for row, arrays in zip(self.rows, self.arrays, strict=True)}
        out["pooled"] = (np.concatenate([a[0] for a in self.arrays]),
                         np.concatenate([a[1] for a in self.arrays]))
        return out

    def metrics(self, models: list[dict[str, Any]]) -> dict[str, Any]:
        """The anomaly.json content: `cv` (out-of-fold rows) and `test`, as evaluate's,
        and each training's threshold."""
        folds = [row.get("fold", -2) for row in self.rows]
        metrics: dict[str, Any] = {}
        for key, chosen in (("cv", [i for i, f in enumerate(folds) if f >= 0]),
                            ("test", [i for i, f in enumerate(folds) if f < 0])):
            if chosen:
                rows = pd.DataFrame([self.rows[i] for i in chosen])
                metrics[key] = summarize(rows, self.pooled(chosen))
        metrics["thresholds"] = [{"fold": m["fold"], "threshold": m["threshold"],
                                  "val_dice_WT": m["val_dice_WT"]} for m in models]
        return metrics

    def write(self, models: list[dict[str, Any]], per_subject_out: str | Path,
              metrics_out: str | Path) -> dict[str, Any]:
        """anomaly_subjects.csv (sorted by subject) and anomaly.json; returns the metrics."""
        frame = pd.DataFrame(self.rows).sort_values("subject", kind="stable")
        with atomic_file(per_subject_out) as tmp:
            frame.to_csv(tmp, index=False, lineterminator="\n", float_format="%.6g")
        metrics = self.metrics(models)
        write_text(metrics_out, json.dumps(metrics, indent=1) + "\n")
        for key in ("cv", "test"):
            if key in metrics:
                log.info("anomaly %s: AUROC %s (pooled %s), WT Dice %s", key,
                         metrics[key]["auroc"]["mean"], metrics[key]["auroc"]["pooled"],
                         metrics[key]["dice_WT"]["mean"])
        return metrics
