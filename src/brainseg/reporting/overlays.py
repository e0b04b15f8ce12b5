"""FLAIR overlays of a scored subject: three planes through the tumour, and an axial GIF.

Every panel shows one thing, so nothing overlaps: the reference contours (WT, TC, ET),
the predicted contours, and the whole-tumour errors filled in colour (true positive,
false positive, false negative).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import PillowWriter
from matplotlib.colors import to_rgba
from matplotlib.patches import Patch

from brainseg.data.boxes import bounding_box
from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.io.atomic import atomic_file
from brainseg.reporting.plots import REGION_COLORS, save_png

ERROR_COLORS = {"true positive": "#2ca02c", "false positive": "#ff2d2d",
                "false negative": "#19d3f3"}
ROWS = ("reference", "prediction", "WT errors")
PLANES = ("axial", "coronal", "sagittal")
# nested regions often share a border: wider lines underneath keep each one visible
LINE_WIDTHS = {"WT": 1.2, "TC": 2.0, "ET": 0.9}
MARGIN = 4  # voxels kept around the brain, and slices around the tumour in the GIF

Spacing = tuple[float, float, float]


def tumour_centre(ref: np.ndarray, pred: np.ndarray) -> tuple[int, int, int]:
    """Centre of mass of the reference tumour, else of the prediction, else the volume."""
    for labels in (ref, pred):
        if labels.any():
            return tuple(int(np.floor(c + 0.5)) for c in np.argwhere(labels > 0).mean(axis=0))
    return tuple(int(s) // 2 for s in ref.shape)


def brain_box(flair: np.ndarray) -> tuple[slice, ...]:
    """The box around the non-zero FLAIR voxels plus `MARGIN` (the whole volume if none)."""
    return bounding_box(flair != 0, MARGIN) or tuple(slice(0, s) for s in flair.shape)


def planes(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial (anterior up), coronal and sagittal (superior up) planes through `centre`.

    Assumes the BraTS voxel order (x towards the patient's right, y towards posterior).
    """
    x, y, z = centre
    return [volume[:, :, z].T, np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def aspects(spacing: Spacing) -> list[float]:
    """Pixel aspect (height / width) of the planes of `planes` for a voxel size in mm."""
    sx, sy, sz = spacing
    return [sy / sx, sz / sx, sz / sy]


def plane_extents(shape: tuple[int, ...], spacing: Spacing) -> tuple[list[float], float]:
    """Widths in mm of the axial, coronal and sagittal planes, and the tallest height."""
    (x, y, z), (sx, sy, sz) = shape, spacing
    return [x * sx, x * sx, y * sy], max(y * sy, z * sz)


def error_rgba(ref_wt: np.ndarray, pred_wt: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """(h, w, 4) image: true positives, false positives and false negatives coloured."""
    rgba = np.zeros((*ref_wt.shape, 4))
    for name, mask in (("true positive", ref_wt & pred_wt), ("false positive", pred_wt & ~ref_wt),
                       ("false negative", ref_wt & ~pred_wt)):
        rgba[mask] = to_rgba(ERROR_COLORS[name], alpha)
    return rgba


def draw_panel(ax: plt.Axes, image: np.ndarray, regions: list[np.ndarray], row: str,
               vmax: float, aspect: float, ref_wt: np.ndarray | None = None) -> None:
    """FLAIR plane plus either region contours (`regions`) or the WT error fill.

    Args:
        image: (h, w) FLAIR plane; regions: WT, TC, ET masks (h, w) of the row's labels.
        row: one of `ROWS`; for "WT errors", `regions` is the prediction and `ref_wt` the
            reference whole tumour.
    """
    ax.imshow(image, cmap="gray", vmin=0, vmax=vmax, aspect=aspect, interpolation="nearest")
    if row == "WT errors":
        ax.imshow(error_rgba(ref_wt, regions[0]), aspect=aspect, interpolation="nearest")
    else:
        for region, mask in zip(REGIONS, regions, strict=True):
            if mask.any() and min(mask.shape) > 1:  # a one-slice volume: no side contour
                ax.contour(mask, levels=[0.5], colors=REGION_COLORS[region],
                           linewidths=LINE_WIDTHS[region])
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)


def legend_handles() -> list:
    """Region contour colours and WT error colours."""
    handles = [plt.Line2D([], [], color=REGION_COLORS[r], label=f"{r} contour") for r in REGIONS]
    return handles + [Patch(color=c, alpha=0.7, label=n) for n, c in ERROR_COLORS.items()]


def flair_vmax(flair: np.ndarray) -> float:
    """Display ceiling: the 99.5th percentile of the non-zero FLAIR voxels."""
    return float(np.percentile(flair[flair != 0], 99.5)) if flair.any() else 1.0


def plot_overlay(flair: np.ndarray, ref: np.ndarray, pred: np.ndarray, title: str,
                 path: Path, dpi: int = 120, spacing: Spacing = (1.0, 1.0, 1.0)) -> None:
    """Three planes through the tumour centre (columns) x reference, prediction, errors (rows).

    Args:
        flair: (x, y, z) intensities; ref, pred: (x, y, z) BraTS label maps of the same grid.
        spacing: voxel size in mm, for the aspect ratio of each plane.
    """
    box = brain_box(flair)
    flair, ref, pred = flair[box], ref[box], pred[box]
    centre = tumour_centre(ref, pred)
    ref_planes = [planes(m, centre) for m in labels_to_regions(ref)]
    pred_planes = [planes(m, centre) for m in labels_to_regions(pred)]
    vmax = flair_vmax(flair)
    widths, height = plane_extents(flair.shape, spacing)
    scale = 3.2 / max(height, *widths)  # inches per mm
    ncol = 6 if scale * sum(widths) > 7.5 else 3  # the legend wraps on narrow figures
    legend_h = 0.25 * (6 // ncol) + 0.15
    fig_w, fig_h = scale * sum(widths) + 0.5, 3 * scale * height + 0.6 + legend_h
    fig, axes = plt.subplots(3, 3, figsize=(fig_w, fig_h),
                             gridspec_kw={"width_ratios": widths, "hspace": 0.04,
                                          "wspace": 0.03})
    fig.subplots_adjust(left=0.5 / fig_w, right=0.99, top=1 - 0.6 / fig_h,
                        bottom=legend_h / fig_h)
    for col, (image, aspect) in enumerate(zip(planes(flair, centre), aspects(spacing),
                                              strict=True)):
        refs = [p[col] for p in ref_planes]
        preds = [p[col] for p in pred_planes]
        for row, (name, masks) in enumerate(zip(ROWS, (refs, preds, preds), strict=True)):
            draw_panel(axes[row, col], image, masks, name, vmax, aspect, refs[0])
        axes[0, col].set_title(PLANES[col])
    for row, name in enumerate(ROWS):
        axes[row, 0].set_ylabel(name)
    fig.legend(handles=legend_handles(), loc="lower center", ncol=ncol, frameon=False,
               fontsize=8)
    fig.suptitle(title, y=1 - 0.15 / fig_h, va="top")
    save_png(fig, path, dpi)


def axial_frames(ref: np.ndarray, pred: np.ndarray, brain: np.ndarray,
                 max_frames: int) -> np.ndarray:
    """Axial slice indices: the tumour's extent (reference or prediction) plus `MARGIN`,
    within the brain, at most `max_frames` of them evenly spaced."""
    brain_z = np.flatnonzero(brain.any(axis=(0, 1)))
    tumour_z = np.flatnonzero(((ref > 0) | (pred > 0)).any(axis=(0, 1)))
    lo, hi = (brain_z[0], brain_z[-1]) if len(brain_z) else (0, ref.shape[2] - 1)
    if len(tumour_z):
        lo, hi = max(lo, tumour_z[0] - MARGIN), min(hi, tumour_z[-1] + MARGIN)
    return np.unique(np.linspace(lo, hi, min(max_frames, hi - lo + 1)).round().astype(int))


def animate_axial(flair: np.ndarray, ref: np.ndarray, pred: np.ndarray, title: str,
                  path: Path, dpi: int = 72, max_frames: int = 40, fps: int = 6,
                  spacing: Spacing = (1.0, 1.0, 1.0)) -> int:
    """GIF scrolling the axial slices: reference, prediction and WT errors side by side.

    Args:
        flair: (x, y, z) intensities; ref, pred: (x, y, z) BraTS label maps.
        spacing: voxel size in mm (only the in-plane aspect is used).
    Returns:
        The number of frames written.
    """
    box = brain_box(flair)
    flair, ref, pred = flair[box], ref[box], pred[box]
    frames = axial_frames(ref, pred, flair != 0, max_frames)
    ref_r, pred_r, vmax = labels_to_regions(ref), labels_to_regions(pred), flair_vmax(flair)
    aspect = aspects(spacing)[0]
    panel_h = 2.4  # inches; about one pixel per voxel at 72 dpi
    panel_w = panel_h * flair.shape[0] / (flair.shape[1] * aspect)
    fig, axes = plt.subplots(1, 3, figsize=(3 * panel_w + 0.3, panel_h + 0.8))
    fig.subplots_adjust(left=0.02, right=0.98, top=1 - 0.45 / (panel_h + 0.8),
                        bottom=0.35 / (panel_h + 0.8), wspace=0.05)
    fig.legend(handles=legend_handles(), loc="lower center", ncol=6, frameon=False, fontsize=5,
               handlelength=1.2, columnspacing=0.8)
    heading = fig.suptitle(title, fontsize=7)
    writer = PillowWriter(fps=fps)
    with atomic_file(path) as tmp:
        writer.setup(fig, tmp, dpi=dpi)
        for z in frames:
            refs, preds = [m[:, :, z].T for m in ref_r], [m[:, :, z].T for m in pred_r]
            for ax, name, masks in zip(axes, ROWS, (refs, preds, preds), strict=True):
                for artist in [*ax.images, *ax.collections]:  # faster than ax.clear()
                    artist.remove()
                draw_panel(ax, flair[:, :, z].T, masks, name, vmax, aspect, refs[0])
                ax.set_title(name, fontsize=7, pad=2)
            heading.set_text(f"{title}  (axial slice {z + box[2].start})")
            writer.grab_frame()
        writer.finish()
    plt.close(fig)
    return len(frames)
