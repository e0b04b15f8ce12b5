"""Matplotlib figures: learning curves, Dice per region, and contour overlays."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.io.atomic import atomic_file
from brainseg.io.nifti import MODALITIES, Subject

REGION_COLORS = {"WT": "#f2c230", "TC": "#e4572e", "ET": "#1f9bd1"}


def _save(fig: plt.Figure, path: Path, dpi: int) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png",
                    metadata={"Software": None})
    plt.close(fig)


def plot_learning_curves(history: pd.DataFrame, path: Path, dpi: int = 120) -> None:
    """Train/val loss and validation Dice per region against the epoch."""
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(history["epoch"], history["train_loss"], "o-", label="train")
    ax_loss.plot(history["epoch"], history["val_loss"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="Dice + BCE loss", title="Loss")
    ax_loss.legend()
    for region in REGIONS:
        ax_dice.plot(history["epoch"], history[f"val_dice_{region}"], "o-",
                     color=REGION_COLORS[region], label=region)
    ax_dice.plot(history["epoch"], history["val_dice_mean"], "k--", label="mean")
    ax_dice.set(xlabel="epoch", ylabel="Dice (3D, per subject)", ylim=(0, 1),
                title="Validation Dice")
    ax_dice.legend(loc="lower right")
    for ax in (ax_loss, ax_dice):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _save(fig, path, dpi)


def plot_dice_box(per_subject: pd.DataFrame, path: Path, dpi: int = 120) -> None:
    """Box plot of test Dice per region, every subject drawn as a point."""
    fig, ax = plt.subplots(figsize=(5, 4))
    data = [per_subject[f"dice_{r}"].to_numpy() for r in REGIONS]
    ax.boxplot(data, tick_labels=list(REGIONS), widths=0.5, showfliers=False)
    rng = np.random.default_rng(0)
    for i, (region, values) in enumerate(zip(REGIONS, data, strict=True), start=1):
        ax.scatter(i + rng.uniform(-0.12, 0.12, len(values)), values, s=18, alpha=0.8,
                   color=REGION_COLORS[region], zorder=3)
    ax.set(ylabel="Dice (3D)", ylim=(-0.02, 1.02),
           title=f"Test Dice per region (n = {len(per_subject)})")
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path, dpi)


def _planes(volume: np.ndarray, centre: tuple[int, int, int]) -> list[np.ndarray]:
    """Axial (anterior up), coronal and sagittal (superior up) planes through `centre`.

    Assumes the BraTS voxel order (x towards the patient's right, y towards posterior).
    """
    x, y, z = centre
    return [volume[:, :, z].T, np.rot90(volume[:, y, :]), np.rot90(volume[x, :, :])]


def plot_overlay(flair: np.ndarray, ref: np.ndarray, pred: np.ndarray, title: str,
                 path: Path, dpi: int = 120) -> None:
    """FLAIR through the tumour centre with reference (solid) and predicted (dashed) contours.

    Args:
        flair: (x, y, z) intensities; ref, pred: (x, y, z) BraTS label maps.
    """
    tumour = ref > 0 if ref.any() else pred > 0
    centre = tuple(int(c) for c in (np.argwhere(tumour).mean(0) if tumour.any()
                                    else np.array(flair.shape) // 2))
    ref_r, pred_r = labels_to_regions(ref), labels_to_regions(pred)
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    vmax = np.percentile(flair[flair != 0], 99.5) if flair.any() else 1.0
    names = ("axial", "coronal", "sagittal")
    for ax, name, img, refs, preds in zip(axes, names, _planes(flair, centre),
                                          zip(*[_planes(r, centre) for r in ref_r], strict=True),
                                          zip(*[_planes(p, centre) for p in pred_r], strict=True),
                                          strict=True):
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax)
        for region, r_mask, p_mask in zip(REGIONS, refs, preds, strict=True):
            color = REGION_COLORS[region]
            if r_mask.any():
                ax.contour(r_mask, levels=[0.5], colors=color, linewidths=1.2)
            if p_mask.any():
                ax.contour(p_mask, levels=[0.5], colors=color, linewidths=1.2, linestyles="--")
        ax.set_title(name)
        ax.axis("off")
    handles = [plt.Line2D([], [], color=REGION_COLORS[r], label=r) for r in REGIONS]
    handles += [plt.Line2D([], [], color="k", label="reference"),
                plt.Line2D([], [], color="k", ls="--", label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=5, frameon=False)
    fig.suptitle(title)
    _save(fig, path, dpi)


def plot_histograms(synthetic: dict[str, np.ndarray], real: dict[str, np.ndarray],
                    regions: dict[str, str], modalities: tuple[str, ...], bins: int,
                    path: Path, dpi: int = 120) -> None:
    """Normalized intensity densities per region (rows) and modality (columns)."""
    fig, axes = plt.subplots(len(regions), len(modalities), figsize=(3.2 * len(modalities),
                                                                       2.4 * len(regions)))
    edges = np.linspace(-4, 6, bins + 1)
    for row, (name, label) in enumerate(regions.items()):
        for col, modality in enumerate(modalities):
            ax = axes[row, col]
            for values, colour, who in ((synthetic[name], "#1f9bd1", "synthetic"),
                                        (real[name], "#e4572e", "real")):
                if len(values):
                    ax.hist(values[:, col], bins=edges, density=True, histtype="step",
                            color=colour, lw=1.4, label=who)
            ax.set_title(f"{modality}: {label}", fontsize=9)
            ax.set_yticks([])
    axes[0, 0].legend(fontsize=8)
    fig.supxlabel("intensity after the pipeline's normalization (z-score in brain)")
    fig.tight_layout()
    _save(fig, path, dpi)


def plot_volumes(wt_cm3: np.ndarray, reference: tuple[float, float], path: Path,
                 dpi: int = 120) -> None:
    """Histogram of synthetic whole-tumour volumes against the BraTS range."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.axvspan(*reference, color="#e4572e", alpha=0.12, label="BraTS range")
    ax.hist(wt_cm3, bins=np.geomspace(1, 400, 25), color="#1f9bd1", label="synthetic cohort")
    ax.set(xscale="log", xlabel="whole-tumour volume (cm³)", ylabel="subjects")
    ax.legend(fontsize=8)
    _save(fig, path, dpi)


def plot_side_by_side(synthetic: Subject, real: Subject, path: Path, dpi: int = 120) -> None:
    """Axial slice through the tumour centre, four modalities, synthetic above real."""
    fig, axes = plt.subplots(2, 5, figsize=(14, 6))
    for row, subject in enumerate((synthetic, real)):
        seg = subject.seg if subject.seg is not None else np.zeros(subject.image.shape[1:])
        z = int(np.argmax((seg > 0).sum(axis=(0, 1)))) if seg.any() else seg.shape[2] // 2
        for col in range(4):
            plane = subject.image[col, :, :, z]
            vmax = np.percentile(plane[plane != 0], 99.5) if plane.any() else 1.0
            axes[row, col].imshow(plane.T, cmap="gray", vmin=0, vmax=vmax)
            axes[row, col].set_title(f"{subject.subject}: {MODALITIES[col]}", fontsize=9)
        axes[row, 4].imshow(seg[:, :, z].T, cmap="viridis", vmin=0, vmax=4,
                            interpolation="nearest")
        axes[row, 4].set_title("labels (0/1/2/4)", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    _save(fig, path, dpi)
