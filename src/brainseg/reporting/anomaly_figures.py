"""Figures of the anomaly stage: a subject's input, reconstruction and error map with the
reference whole-tumour contour, and the ROC curves of the maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import roc_curve

from brainseg.reporting.plots import REGION_COLORS, save_png

ROC_POINTS = 400  # points drawn per ROC curve (the curve is sampled, not thinned by hand)


def tumour_slice(tumour: np.ndarray, brain: np.ndarray) -> int:
    """The axial index (z of (z, h, w)) with the most tumour, else the most brain."""
    counts = tumour.sum(axis=(1, 2))
    return int(np.argmax(counts if counts.any() else brain.sum(axis=(1, 2))))


def plot_reconstruction(image: np.ndarray, recon: np.ndarray, error: np.ndarray,
                        tumour: np.ndarray, brain: np.ndarray, channel: str, title: str,
                        path: Path, dpi: int = 120) -> None:
    """Input, reconstruction and error map of one axial slice, reference WT contoured.

    Args:
        image, recon: float (z, h, w) one channel (named `channel`) of the input and its
            reconstruction.
        error: float (z, h, w) the anomaly map.
        tumour, brain: bool (z, h, w) whole tumour and brain.
    """
    k = tumour_slice(tumour, brain)
    inside = image[brain] if brain.any() else image.ravel()
    low, high = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, 3, figsize=(9.6, 3.6))
    panels = [(image[k], f"input ({channel})", "gray", (low, high)),
              (recon[k], "reconstruction", "gray", (low, high)),
              (error[k], "anomaly map (error)", "inferno", (0.0, float(error.max()) or 1.0))]
    for ax, (plane, name, cmap, (vmin, vmax)) in zip(axes, panels, strict=True):
        shown = ax.imshow(plane.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
        if tumour[k].any():
            ax.contour(tumour[k].T.astype(float), levels=[0.5], colors=REGION_COLORS["WT"],
                       linewidths=1.0, origin="lower")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02)
    fig.suptitle(f"{title} (axial slice {k}; contour: reference whole tumour)", fontsize=10)
    save_png(fig, path, dpi)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray]], pooled_auroc: float,
             path: Path, dpi: int = 120) -> None:
    """ROC curves of the anomaly maps: each subject thin, all voxels pooled thick.

    Args:
        curves: name -> (brain-voxel values (n,), whole tumour bool (n,)); the name
            "pooled" is drawn thick, the others thin. A curve without both classes is
            left out.
    """
    fig, ax = plt.subplots(figsize=(4.8, 4.6))
    for name, (values, tumour) in curves.items():
        if not 0 < tumour.sum() < len(tumour):
            continue
        fpr, tpr, _ = roc_curve(tumour, values)
        pick = np.unique(np.linspace(0, len(fpr) - 1, ROC_POINTS).astype(int))
        pooled = name == "pooled"
        ax.plot(fpr[pick], tpr[pick], lw=2.0 if pooled else 0.7, alpha=1.0 if pooled else 0.5,
                color="black" if pooled else None,
                label=f"pooled (AUROC {pooled_auroc:.3f})" if pooled else None)
    ax.plot([0, 1], [0, 1], ls="--", lw=0.7, color="grey")
    ax.set_xlabel("false positive rate (brain voxels)")
    ax.set_ylabel("true positive rate (whole tumour)")
    ax.set_title("anomaly map ROC", fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    save_png(fig, path, dpi)
