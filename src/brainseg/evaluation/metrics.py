"""3D overlap, distance and volume metrics with the BraTS conventions for empty masks.

The definitions (Dice, IoU, precision, sensitivity, specificity, accuracy, HD95,
signed volume difference), the rule for empty masks (`HD95_EMPTY_MM` when exactly one
is empty) and the HD95 convention (MedPy's pooled surface distances) are written once,
in docs/conventions.md ("Metrics").

Everything is computed inside the bounding box of the two tumors (outside it both
masks are background, so the counts, surfaces and distances are unchanged), with the
confusion counts taken once per region and the surface distances by nearest-neighbour
search between the two surfaces (`surface_distances`, also used by `lesions`).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from brainseg.data.boxes import bounding_box
from brainseg.data.labels import REGION_LABELS, REGIONS
from brainseg.errors import BrainsegError

HD95_EMPTY_MM = 373.13
#: k-d trees built fast (median splits and node shrinking cost more than they save here)
_TREE = {"balanced_tree": False, "compact_nodes": False}
METRICS: tuple[str, ...] = ("dice", "iou", "precision", "sensitivity", "specificity",
                            "accuracy", "hd95", "volume_diff_cm3")


class Confusion(NamedTuple):
    """Voxel counts of a binary prediction against a binary reference."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion(pred: np.ndarray, ref: np.ndarray, n_voxels: int | None = None) -> Confusion:
    """Count TP, FP, FN, TN of two bool masks of one shape.

    Args:
        pred: predicted mask (bool, any shape).
        ref: reference mask (bool, same shape).
        n_voxels: voxels of the full grid when `pred` and `ref` are a crop of it that
            holds all their foreground (TN counts the voxels outside the crop too).
    """
    n_p, n_r = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    tp = int(np.count_nonzero(pred & ref)) if n_p and n_r else 0
    total = pred.size if n_voxels is None else n_voxels
    return Confusion(tp, n_p - tp, n_r - tp, total - n_p - n_r + tp)


def _rate(num: int, den: int, other: int) -> float:
    """num / den; for den == 0: 1 if the matching set of the other mask is empty, else 0."""
    if den == 0:
        return 1.0 if other == 0 else 0.0
    return num / den


def overlap_scores(c: Confusion) -> dict[str, float]:
    """Dice, IoU, precision, sensitivity, specificity and accuracy from counts."""
    n = c.tp + c.fp + c.fn + c.tn
    return {
        "dice": _rate(2 * c.tp, 2 * c.tp + c.fp + c.fn, 0),
        "iou": _rate(c.tp, c.tp + c.fp + c.fn, 0),
        "precision": _rate(c.tp, c.tp + c.fp, c.fn),
        "sensitivity": _rate(c.tp, c.tp + c.fn, c.fp),
        "specificity": _rate(c.tn, c.tn + c.fp, c.fn),
        "accuracy": _rate(c.tp + c.tn, n, 0),
    }


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice = 2|P∩R| / (|P| + |R|); 1 when both are empty."""
    return overlap_scores(confusion(pred, ref))["dice"]


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """IoU = |P∩R| / |P∪R|; 1 when both are empty."""
    return overlap_scores(confusion(pred, ref))["iou"]


def precision(pred: np.ndarray, ref: np.ndarray) -> float:
    """|P∩R| / |P|; 1 when both are empty, 0 when only P is."""
    return overlap_scores(confusion(pred, ref))["precision"]


def sensitivity(pred: np.ndarray, ref: np.ndarray) -> float:
    """Sensitivity (recall) |P∩R| / |R|; 1 when both are empty, 0 when only R is."""
    return overlap_scores(confusion(pred, ref))["sensitivity"]


def specificity(pred: np.ndarray, ref: np.ndarray) -> float:
    """|not P ∩ not R| / |not R|; when R fills the grid: 1 if P does too, else 0."""
    return overlap_scores(confusion(pred, ref))["specificity"]


def accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of voxels where P and R agree."""
    return overlap_scores(confusion(pred, ref))["accuracy"]


def volume_difference_cm3(pred: np.ndarray, ref: np.ndarray,
                          spacing: tuple[float, ...]) -> float:
    """(|P| - |R|) times the voxel volume, in cm³ (`spacing` in mm); > 0: P is larger."""
    diff = int(np.count_nonzero(pred)) - int(np.count_nonzero(ref))
    return _volume_cm3(diff, spacing)


def _volume_cm3(voxels: int, spacing: tuple[float, ...]) -> float:
    return voxels * float(np.prod(spacing, dtype=np.float64)) / 1000.0


def _surface(mask: np.ndarray) -> np.ndarray:
    """Mask voxels with a background 6-neighbour (outside the array is background)."""
    cross = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=cross, border_value=0)


def check_spacing(spacing: tuple[float, ...], ndim: int) -> tuple[float, ...]:
    """`spacing` as floats, refusing anything but `ndim` positive numbers (BrainsegError)."""
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ndim or not all(s > 0 for s in spacing):
        raise BrainsegError(f"voxel spacing must be {ndim} positive numbers, got {spacing}")
    return spacing


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Distances in mm from each surface voxel of one mask to the other's surface.

    Exact nearest-neighbour distances between the surface voxels' centres in mm (a k-d
    tree on each surface: the same values as a Euclidean distance transform, without
    transforming the whole box).

    Args:
        pred: predicted mask (bool), not empty.
        ref: reference mask (bool, same shape), not empty.
        spacing: voxel size in mm along each axis (checked by the caller).

    Returns:
        (from each surface voxel of `pred` to the surface of `ref`, from each surface voxel
        of `ref` to the surface of `pred`), 1D float arrays, in no particular order (the
        voxels on both surfaces first, at distance 0).
    """
    box = bounding_box(pred | ref)
    scale = np.asarray(spacing, dtype=np.float64)
    sp, sr = _surface(pred[box]), _surface(ref[box])
    shared = np.zeros(int(np.count_nonzero(sp & sr)))  # on both surfaces: distance 0
    to_ref = cKDTree(np.argwhere(sr) * scale, **_TREE).query(np.argwhere(sp & ~sr) * scale)[0]
    to_pred = cKDTree(np.argwhere(sp) * scale, **_TREE).query(np.argwhere(sr & ~sp) * scale)[0]
    return np.concatenate([shared, to_ref]), np.concatenate([shared, to_pred])


def hd95_of(to_ref: np.ndarray, to_pred: np.ndarray) -> float:
    """HD95 from the two arrays of `surface_distances`: the 95th percentile of both, pooled."""
    return float(np.percentile(np.concatenate([to_ref, to_pred]), 95))


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> float:
    """95th percentile of the pooled surface-to-surface distances, in mm (docs/conventions.md).

    Args:
        pred: predicted mask (bool).
        ref: reference mask (bool, same shape).
        spacing: voxel size in mm along each axis of the arrays.
    """
    spacing = check_spacing(spacing, pred.ndim)
    has_p, has_r = bool(pred.any()), bool(ref.any())
    if not has_p and not has_r:
        return 0.0
    if not (has_p and has_r):
        return HD95_EMPTY_MM
    return hd95_of(*surface_distances(pred, ref, spacing))


def mask_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                 n_voxels: int | None = None) -> dict[str, float]:
    """Every metric of METRICS for one pair of masks (or a crop holding all their foreground).

    Args:
        pred: predicted mask (bool).
        ref: reference mask (bool, same shape).
        spacing: voxel size in mm along each axis.
        n_voxels: voxels of the full grid when the masks are a crop of it.
    """
    c = confusion(pred, ref, n_voxels)
    scores = overlap_scores(c)
    scores["hd95"] = hd95(pred, ref, spacing)
    scores["volume_diff_cm3"] = _volume_cm3(c.fp - c.fn, spacing)
    return {m: scores[m] for m in METRICS}


def region_metrics(
    pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: tuple[float, ...],
    regions: tuple[str, ...] = REGIONS,
) -> dict[str, dict[str, float]]:
    """Every metric for WT, TC and ET from two BraTS label maps on the same grid.

    Args:
        pred_labels: predicted labels (x, y, z), values in {0, 1, 2, 4}.
        ref_labels: reference labels, same shape.
        spacing: voxel size in mm along x, y, z.
        regions: the regions to score (those the reference annotates); every metric of
            the others is NaN (not available: a whole-tumour-only label map says nothing
            of TC and ET).

    Returns:
        {region: {metric: value}} for the regions of REGIONS and the metrics of METRICS.

    Raises:
        BrainsegError: the shapes differ or the spacing does not fit them.
    """
    if pred_labels.shape != ref_labels.shape:
        raise BrainsegError(f"prediction shape {pred_labels.shape} does not match the "
                            f"reference shape {ref_labels.shape}")
    spacing = check_spacing(spacing, ref_labels.ndim)
    box = bounding_box((pred_labels != 0) | (ref_labels != 0))
    if box is None:
        box = tuple(slice(0, 0) for _ in ref_labels.shape)
    pred_box, ref_box = pred_labels[box], ref_labels[box]
    out: dict[str, dict[str, float]] = {}
    for region in REGIONS:
        if region not in regions:
            out[region] = dict.fromkeys(METRICS, float("nan"))
            continue
        labels = REGION_LABELS[region]
        p, r = np.isin(pred_box, labels), np.isin(ref_box, labels)
        out[region] = mask_metrics(p, r, spacing, n_voxels=ref_labels.size)
    return out
