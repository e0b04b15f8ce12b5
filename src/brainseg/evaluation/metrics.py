"""3D overlap and distance metrics with the BraTS conventions for empty masks.

Conventions (as the BraTS challenge scores):
- reference and prediction both empty: Dice = IoU = precision = recall = 1, HD95 = 0;
- exactly one empty: Dice = IoU = 0, HD95 = 373.13 mm (the diagonal of a
  240 x 240 x 155 mm volume); precision (prediction empty) and recall (reference
  empty) are 0 as well.
HD95 is the larger of the two directed 95th percentiles of surface-to-surface
distances, in millimetres from the voxel spacing (as MedPy's `hd95`).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from brainseg.data.labels import REGIONS, labels_to_regions

HD95_EMPTY_MM = 373.13


def _counts(pred: np.ndarray, ref: np.ndarray) -> tuple[int, int, int]:
    tp = int(np.count_nonzero(pred & ref))
    return tp, int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(ref)) - tp


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice = 2|P∩R| / (|P| + |R|); 1 when both are empty."""
    tp, fp, fn = _counts(pred, ref)
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """IoU = |P∩R| / |P∪R|; 1 when both are empty."""
    tp, fp, fn = _counts(pred, ref)
    return 1.0 if tp + fp + fn == 0 else tp / (tp + fp + fn)


def precision(pred: np.ndarray, ref: np.ndarray) -> float:
    """|P∩R| / |P|; 1 when both are empty, 0 when only P is empty."""
    tp, fp, fn = _counts(pred, ref)
    if tp + fp == 0:
        return 1.0 if fn == 0 else 0.0
    return tp / (tp + fp)


def recall(pred: np.ndarray, ref: np.ndarray) -> float:
    """Sensitivity |P∩R| / |R|; 1 when both are empty, 0 when only R is empty."""
    tp, fp, fn = _counts(pred, ref)
    if tp + fn == 0:
        return 1.0 if fp == 0 else 0.0
    return tp / (tp + fn)


def _surface(mask: np.ndarray) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th-percentile Hausdorff distance in mm between the surfaces of two masks.

    Computed on the bounding box of both masks (plus one voxel), with Euclidean
    distance transforms that honour `spacing`.
    """
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not has_p and not has_r:
        return 0.0
    if not (has_p and has_r):
        return HD95_EMPTY_MM
    coords = np.argwhere(pred | ref)
    lo = np.maximum(coords.min(0) - 1, 0)
    hi = coords.max(0) + 2
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    sp, sr = _surface(pred[box]), _surface(ref[box])
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)[sp]
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)[sr]
    return float(max(np.percentile(to_ref, 95), np.percentile(to_pred, 95)))


def region_metrics(
    pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: tuple[float, ...]
) -> dict[str, dict[str, float]]:
    """Every metric for WT, TC and ET from two BraTS label maps (x, y, z).

    Returns:
        {region: {"dice", "iou", "precision", "recall", "hd95"}}.
    """
    pred_r, ref_r = labels_to_regions(pred_labels), labels_to_regions(ref_labels)
    out: dict[str, dict[str, float]] = {}
    for i, region in enumerate(REGIONS):
        p, r = pred_r[i], ref_r[i]
        out[region] = {
            "dice": dice(p, r),
            "iou": iou(p, r),
            "precision": precision(p, r),
            "recall": recall(p, r),
            "hd95": hd95(p, r, spacing),
        }
    return out
