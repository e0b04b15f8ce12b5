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
