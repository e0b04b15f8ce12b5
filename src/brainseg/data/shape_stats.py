"""Tumour shape and position statistics of one label map, in millimetres.

All on the subject's own grid (x, y, z) with its voxel spacing, BraTS labels
{0, 1, 2, 4}: whole tumour WT = {1, 2, 4}, tumour core TC = {1, 4}, enhancing ET = {4}.
A quantity that is not defined (no tumour, no core, no ventricle found) is NaN.

The ventricles are approximated, since no anatomical label exists: cerebrospinal fluid
(dark in T1, bright in T2, z-scored inside the brain) deeper than `VENTRICLE_DEPTH_MM`
from the brain surface, away from the tumour (its edema is T1-dark and T2-bright too),
in connected pieces of at least `VENTRICLE_MIN_CM3`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from brainseg.data.boxes import bounding_box
from brainseg.data.labels import region_mask

#: 26-connectivity in 3D, as the post-processing's connected components.
CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
#: Ventricle approximation: z-score thresholds in T1 (below) and T2 (above).
CSF_T1_MAX, CSF_T2_MIN = -1.0, 1.0
VENTRICLE_DEPTH_MM = 15.0
VENTRICLE_MIN_CM3 = 1.0
TUMOUR_MARGIN_MM = 5.0


def n_components(mask: np.ndarray) -> int:
    """The number of 26-connected components of a bool mask (x, y, z)."""
    return int(ndi.label(mask, structure=CONNECTIVITY)[1])


def compactness(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Moment compactness of a bool mask (x, y, z): the polar moment of inertia of the ball
    of the same volume over the mask's own (about its centroid). 1 for a ball, smaller for
    every other shape (an elongated or ragged tumour, or several pieces); NaN when empty.

    Each voxel counts as a box of the spacing's sides (its own moment included), so a
    voxelized ball scores 1 to within discretization.
    """
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return float("nan")
    h = np.asarray(spacing, dtype=np.float64)
    points = idx * h
    voxel = float(np.prod(h))
    volume = len(idx) * voxel
    moment = voxel * (((points - points.mean(0)) ** 2).sum() + len(idx) * (h ** 2).sum() / 12)
    ball = 0.6 * volume * (3 * volume / (4 * np.pi)) ** (2 / 3)
    return float(ball / moment)


def centroid_mm(mask: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Centroid (3,) of a non-empty bool mask (x, y, z), in mm from voxel (0, 0, 0)."""
    return np.argwhere(mask).mean(0) * np.asarray(spacing, dtype=np.float64)


def nearest_mm(point: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float]
               ) -> float:
    """Distance (mm) from `point` (3,) in mm to the nearest voxel centre of `mask`; NaN
    when the mask is empty."""
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return float("nan")
    return float(np.sqrt((((idx * np.asarray(spacing)) - point) ** 2).sum(1)).min())


def depth_mm(brain: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Float (x, y, z): each brain voxel's distance (mm) to the nearest non-brain voxel
    (0 outside the brain); the volume's own edge counts as outside."""
    return ndi.distance_transform_edt(np.pad(brain, 1), sampling=spacing)[1:-1, 1:-1, 1:-1]


def ventricle_mask(t1: np.ndarray, t2: np.ndarray, depth: np.ndarray, wt: np.ndarray,
                   spacing: tuple[float, float, float]) -> np.ndarray:
    """Bool (x, y, z): the approximate ventricles (see the module docstring).

    Args:
        t1, t2: z-scored intensities (x, y, z), 0 outside the brain.
        depth: `depth_mm` of the brain mask.
        wt: bool (x, y, z) whole tumour.
    """
    near_tumour = ndi.distance_transform_edt(~wt, sampling=spacing) <= TUMOUR_MARGIN_MM \
        if wt.any() else np.zeros(wt.shape, dtype=bool)
    csf = (t1 < CSF_T1_MAX) & (t2 > CSF_T2_MIN) & (depth > VENTRICLE_DEPTH_MM) & ~near_tumour
    labels, n = ndi.label(csf, structure=CONNECTIVITY)
    if n == 0:
        return csf
    sizes = np.bincount(labels.ravel())[1:] * float(np.prod(spacing)) / 1000.0
    keep = np.flatnonzero(sizes >= VENTRICLE_MIN_CM3) + 1
    return np.isin(labels, keep)


def shape_summary(seg: np.ndarray, brain: np.ndarray, t1: np.ndarray, t2: np.ndarray,
                  spacing: tuple[float, float, float]) -> dict[str, float]:
    """Tumour shape and position statistics of one subject.

    Args:
        seg: uint8 (x, y, z) BraTS labels.
        brain: bool (x, y, z) brain mask.
        t1, t2: z-scored T1 and T2 (x, y, z), for the ventricle approximation.
        spacing: voxel size (mm) along x, y, z.

    Returns:
        {"wt_cm3", "compactness", "n_components", "tc_wt", "et_tc",
        "surface_mm" (tumour centroid's depth below the brain surface),
        "ventricles_mm" (its distance to the nearest approximate ventricle voxel)}.
    """
    box = bounding_box(brain | (seg > 0), margin=1)
    if box is not None:  # every distance map on the brain's box alone: a third of the volume
        seg, brain, t1, t2 = seg[box], brain[box], t1[box], t2[box]
    wt, tc, et = (region_mask(seg, r) for r in ("WT", "TC", "ET"))
    n_wt, n_tc, n_et = (int(np.count_nonzero(m)) for m in (wt, tc, et))
    out = {"wt_cm3": n_wt * float(np.prod(spacing)) / 1000.0,
           "compactness": compactness(wt, spacing), "n_components": float(n_components(wt)),
           "tc_wt": n_tc / n_wt if n_wt else float("nan"),
           "et_tc": n_et / n_tc if n_tc else float("nan"),
           "surface_mm": float("nan"), "ventricles_mm": float("nan")}
    if n_wt:
        depth = depth_mm(brain, spacing)
        centre = centroid_mm(wt, spacing)
        out["surface_mm"] = surface_depth(centre, depth, spacing)
        out["ventricles_mm"] = nearest_mm(centre, ventricle_mask(t1, t2, depth, wt, spacing),
                                          spacing)
    return out


def surface_depth(centre: np.ndarray, depth: np.ndarray,
                   spacing: tuple[float, float, float]) -> float:
    """The brain depth (mm) at the voxel nearest to `centre` (mm)."""
    index = np.clip(np.rint(centre / np.asarray(spacing)).astype(int), 0,
                    np.array(depth.shape) - 1)
    return float(depth[tuple(index)])
