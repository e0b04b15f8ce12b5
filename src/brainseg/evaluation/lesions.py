"""Lesion-wise metrics, as the BraTS challenges rank since 2023 (docs/conventions.md).

Per region, the lesions are the 26-connected components of the reference and of the
prediction, and each matched pair is scored by Dice, HD95 and the normalized surface
Dice (NSD). Two rule sets (params `evaluate.lesionwise.rules`):

- `brats2025`, the official `brats-evaluation` package (config `gli`, on panoptica):
  lesions matched one to one by maximum bipartite matching on Dice (any pair with
  Dice >= 1e-6 may match; the matching maximises the summed Dice); the lesion-wise score
  is the mean over the matched pairs; without one: Dice 0, NSD 0, HD95 373 mm, and NaN
  when neither mask has a lesion.
- `brats2023`, the BraTS 2023 scripts: reference lesions closer than `dilation` voxels
  merged, every predicted component within `dilation` voxels of a reference lesion
  matched to it, reference lesions of at most `min_volume_mm3` dropped, and each missed
  reference lesion and each unmatched predicted component scored Dice 0, NSD 0,
  HD95 374 mm in a mean over matched + missed + false lesions (both empty: Dice 1,
  NSD 1, HD95 0).

HD95 is the one of `brainseg.evaluation.metrics` (pooled surface distances). Everything
is computed inside the bounding box of the two masks, each pair inside its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brainseg.data.boxes import bounding_box
from brainseg.data.labels import REGION_LABELS, REGIONS
from brainseg.errors import BrainsegError
from brainseg.evaluation.metrics import check_spacing, hd95_of, surface_distances

RULES: tuple[str, ...] = ("brats2025", "brats2023")
LESION_METRICS: tuple[str, ...] = ("lesionwise_dice", "lesionwise_hd95", "lesionwise_nsd",
                                   "lesionwise_tp", "lesionwise_fp", "lesionwise_fn")
#: brats2025: HD95 of a region with lesions but no matched pair (the package's infinity,
#: written as its parser writes an infinite HD95).
NO_MATCH_HD95_MM = 373.0
#: brats2023: HD95 of each missed reference lesion and each unmatched predicted component.
UNMATCHED_HD95_MM = 374.0
#: brats2025: the least Dice of a pair that may be matched (the package's threshold).
MATCHING_DICE = 1e-6

Box = tuple[slice, ...]


@dataclass(frozen=True)
class LesionRules:
    """How lesions are matched and scored (params `evaluate.lesionwise`).

    Attributes:
        rules: one of `RULES`.
        dilation: brats2023: voxels of dilation (18-connected steps) that merge reference
            lesions and reach predicted components; not used by brats2025.
        min_volume_mm3: brats2023: reference lesions of at most this volume are dropped.
    """

    rules: str = "brats2025"
    dilation: int = 3
    min_volume_mm3: float = 50.0

    def __post_init__(self) -> None:
        if self.rules not in RULES:
            raise BrainsegError(f"lesion-wise rules {self.rules!r} are not one of {RULES}")
        if self.dilation < 0 or self.min_volume_mm3 < 0:
            raise BrainsegError(f"lesion-wise dilation {self.dilation} and min_volume_mm3 "
                                f"{self.min_volume_mm3} must be >= 0")

    @classmethod
    def from_params(cls, cfg: dict[str, Any]) -> LesionRules:
        """The rules of params section `evaluate.lesionwise`."""
        return cls(cfg["rules"], int(cfg["dilation"]), float(cfg["min_volume_mm3"]))


#: The default rules (params.yaml's): the official package's.
DEFAULT_RULES = LesionRules()


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of a bool mask, full (26 in 3D) connectivity; labels 1..n."""
    full = ndimage.generate_binary_structure(mask.ndim, mask.ndim)
    labels, n = ndimage.label(mask, structure=full)
    return labels, int(n)


def _union(shape: tuple[int, ...], boxes: list[Box], margin: int = 0) -> Box:
    """The smallest box holding every box of `boxes`, plus `margin`, clipped to `shape`."""
    return tuple(slice(max(min(b[a].start for b in boxes) - margin, 0),
                       min(max(b[a].stop for b in boxes) + margin, shape[a]))
                 for a in range(len(shape)))


def pair_scores(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                tolerance_mm: float) -> tuple[float, float, float]:
    """Dice, HD95 (mm) and NSD of two non-empty bool masks of one shape.

    NSD is the package's (GaNDLF's) normalized surface Dice: the mean of the fractions of
    each mask's surface voxels within `tolerance_mm` of the other's surface.
    """
    inter = int(np.count_nonzero(pred & ref))
    dice = 2.0 * inter / (int(np.count_nonzero(pred)) + int(np.count_nonzero(ref)))
    to_ref, to_pred = surface_distances(pred, ref, spacing)
    nsd = (np.mean(to_ref <= tolerance_mm) + np.mean(to_pred <= tolerance_mm)) / 2.0
    return dice, hd95_of(to_ref, to_pred), float(nsd)


def _scores(values: list[tuple[float, float, float]], tp: int, fp: int, fn: int
            ) -> dict[str, float]:
    dice, hd, nsd = (float(np.mean(v)) for v in zip(*values, strict=True))
    return {"lesionwise_dice": dice, "lesionwise_hd95": hd, "lesionwise_nsd": nsd,
            "lesionwise_tp": float(tp), "lesionwise_fp": float(fp), "lesionwise_fn": float(fn)}


def _match_bipartite(rl: np.ndarray, nr: int, pl: np.ndarray, npred: int
                     ) -> list[tuple[int, int]]:
    """(reference, predicted) lesion labels matched by maximum summed Dice, one to one."""
    if not (nr and npred):
        return []
    both = (rl > 0) & (pl > 0)
    keys, overlap = np.unique(rl[both].astype(np.int64) * (npred + 1) + pl[both],
                              return_counts=True)
    r, p = keys // (npred + 1), keys % (npred + 1)
    size_r = np.bincount(rl.ravel(), minlength=nr + 1)
    size_p = np.bincount(pl.ravel(), minlength=npred + 1)
    dice = 2.0 * overlap / (size_r[r] + size_p[p])
    cost = np.full((nr, npred), 1.0 + 1e-6)
    ok = dice >= MATCHING_DICE
    cost[r[ok] - 1, p[ok] - 1] = 1.0 - dice[ok]
    rows, cols = linear_sum_assignment(cost)
    return [(int(i) + 1, int(j) + 1) for i, j in zip(rows, cols, strict=True)
            if cost[i, j] < 1.0]


def _brats2025(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]
               ) -> dict[str, float]:
    rl, nr = _components(ref)
    pl, npred = _components(pred)
    matched = _match_bipartite(rl, nr, pl, npred)
    ref_boxes, pred_boxes = ndimage.find_objects(rl), ndimage.find_objects(pl)
    values = []
    for i, j in matched:
        box = _union(ref.shape, [ref_boxes[i - 1], pred_boxes[j - 1]])
        values.append(pair_scores(pl[box] == j, rl[box] == i, spacing, min(spacing)))
    tp = len(matched)
    if not tp:
        values = [(0.0, NO_MATCH_HD95_MM, 0.0)] if nr or npred else [(np.nan,) * 3]
    return _scores(values, tp, npred - tp, nr - tp)


def _brats2023(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
               rules: LesionRules) -> dict[str, float]:
    step = ndimage.generate_binary_structure(ref.ndim, 2)
    d = rules.dilation

    def grow(mask: np.ndarray) -> np.ndarray:
        return ndimage.binary_dilation(mask, structure=step, iterations=d) if d else mask

    groups, _ = _components(grow(ref))
    lesions = np.where(ref, groups, 0)  # reference lesions merged by the dilation
    pl, npred = _components(pred)
    pred_boxes, voxel = ndimage.find_objects(pl), float(np.prod(spacing))
    reached: set[int] = set()
    values, tp = [], 0
    for g, box in enumerate(ndimage.find_objects(lesions), start=1):
        if box is None:
            continue
        box = _union(ref.shape, [box], margin=d)
        lesion = lesions[box] == g
        hits = np.unique(pl[box][grow(lesion)])
        hits = hits[hits > 0]
        reached.update(int(h) for h in hits)
        if np.count_nonzero(lesion) * voxel <= rules.min_volume_mm3:
            continue
        if not hits.size:
            values.append((0.0, UNMATCHED_HD95_MM, 0.0))
            continue
        tp += 1
        box = _union(ref.shape, [box, *(pred_boxes[h - 1] for h in hits)])
        values.append(pair_scores(np.isin(pl[box], hits), lesions[box] == g, spacing,
                                  min(spacing)))
    fn, fp = len(values) - tp, npred - len(reached)
    values += [(0.0, UNMATCHED_HD95_MM, 0.0)] * fp
    return _scores(values or [(1.0, 0.0, 1.0)], tp, fp, fn)


def lesion_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
                   rules: LesionRules = DEFAULT_RULES) -> dict[str, float]:
    """Every metric of LESION_METRICS for one region (two bool masks of one shape).

    Args:
        pred: predicted mask (bool).
        ref: reference mask (bool, same shape).
        spacing: voxel size in mm along each axis.
        rules: how lesions are matched and scored.

    Returns:
        {metric: value}: the lesion-wise Dice, HD95 (mm), NSD and the counts of matched
        (tp), false (fp) and missed (fn) lesions (floats).

    Raises:
        BrainsegError: the spacing does not fit the masks.
    """
    spacing = check_spacing(spacing, ref.ndim)
    margin = rules.dilation if rules.rules == "brats2023" else 0
    box = bounding_box(pred | ref, margin=margin)
    if box is None:  # both empty: one voxel is enough to say so
        box = tuple(slice(0, min(n, 1)) for n in ref.shape)
    if rules.rules == "brats2023":
        return _brats2023(pred[box], ref[box], spacing, rules)
    return _brats2025(pred[box], ref[box], spacing)


def region_lesion_metrics(
    pred_labels: np.ndarray, ref_labels: np.ndarray, spacing: tuple[float, ...],
    regions: tuple[str, ...] = REGIONS, rules: LesionRules = DEFAULT_RULES,
) -> dict[str, dict[str, float]]:
    """Every lesion-wise metric for WT, TC and ET from two BraTS label maps on one grid.

    Args:
        pred_labels: predicted labels (x, y, z), values in {0, 1, 2, 4}.
        ref_labels: reference labels, same shape.
        spacing: voxel size in mm along x, y, z.
        regions: the regions to score; every metric of the others is NaN.
        rules: how lesions are matched and scored.

    Returns:
        {region: {metric: value}} for the regions of REGIONS and LESION_METRICS.

    Raises:
        BrainsegError: the shapes differ, the spacing does not fit them.
    """
    if pred_labels.shape != ref_labels.shape:
        raise BrainsegError(f"prediction shape {pred_labels.shape} does not match the "
                            f"reference shape {ref_labels.shape}")
    spacing = check_spacing(spacing, ref_labels.ndim)
    box = bounding_box((pred_labels != 0) | (ref_labels != 0), margin=rules.dilation)
    if box is None:
        box = tuple(slice(0, min(n, 1)) for n in ref_labels.shape)
    pred_box, ref_box = pred_labels[box], ref_labels[box]
    out: dict[str, dict[str, float]] = {}
    for region in REGIONS:
        if region not in regions:
            out[region] = dict.fromkeys(LESION_METRICS, float("nan"))
            continue
        labels = REGION_LABELS[region]
        out[region] = lesion_metrics(np.isin(pred_box, labels), np.isin(ref_box, labels),
                                     spacing, rules)
    return out
