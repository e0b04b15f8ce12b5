"""Matplotlib figures: learning curves, Dice per region, the per-subject table, and the
realism comparison (overlays live in `overlays.py`)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.data.loading import Subject
from brainseg.data.modalities import MODALITIES
from brainseg.io.atomic import atomic_file

REGION_COLORS = {"WT": "#f2c230", "TC": "#e4572e", "ET": "#1f9bd1"}


def save_png(fig: plt.Figure, path: Path, dpi: int) -> None:
    """Write `fig` as a PNG atomically (no timestamp or version metadata), then close it."""
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png",
                    metadata={"Software": None})
    plt.close(fig)


def plot_learning_curves(history: pd.DataFrame, path: Path, dpi: int = 120) -> None:
    """Train/val loss, validation Dice per region and, if logged, the learning rate.

    Args:
        history: one row per epoch with `epoch`, `train_loss`, `val_loss`,
            `val_dice_{WT,TC,ET,mean}` and optionally `lr`; with a `fold` column (a
            cross-validation), the mean over folds is drawn, and each fold's mean Dice
            as a thin line.
    """
    per_fold = None
    if "fold" in history.columns:
        per_fold = history
        history = history.drop(columns="fold").groupby("epoch", as_index=False).mean()
    has_lr = "lr" in history.columns
    fig, axes = plt.subplots(1, 3 if has_lr else 2, figsize=(14 if has_lr else 10, 4))
    epochs = history["epoch"]
    best = int(epochs[history["val_dice_mean"].idxmax()])
    val = history[history["val_loss"].notna()]  # the validated epochs (train.val_every)
    ax_loss, ax_dice = axes[0], axes[1]
    ax_loss.plot(epochs, history["train_loss"], "o-", label="train")
    ax_loss.plot(val["epoch"], val["val_loss"], "s-", label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="Loss")
    for region in REGIONS:
        ax_dice.plot(val["epoch"], val[f"val_dice_{region}"], "o-",
                     color=REGION_COLORS[region], label=region)
    ax_dice.plot(val["epoch"], val["val_dice_mean"], "k--", label="mean")
    if per_fold is not None:
        for fold, rows in per_fold[per_fold["val_loss"].notna()].groupby("fold"):
            ax_dice.plot(rows["epoch"], rows["val_dice_mean"], "-", color="#aaaaaa", lw=0.8,
                         label="mean, each fold" if fold == per_fold["fold"].min() else None)
        ax_dice.set_title(f"Validation Dice (mean of {per_fold['fold'].nunique()} folds)")
    ax_dice.set(xlabel="epoch", ylabel="Dice (3D, per subject)", ylim=(0, 1))
    if per_fold is None:
        ax_dice.set_title("Validation Dice")
    if has_lr:
        axes[2].plot(epochs, history["lr"], "o-", color="#555555")
        axes[2].set(xlabel="epoch", ylabel="learning rate", title="Learning rate")
        axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes:
        ax.axvline(best, color="#999999", ls=":", lw=1,
                   label=f"best val Dice (epoch {best})")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    ax_loss.legend()
    ax_dice.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi)


def _dice_kinds(per_subject: pd.DataFrame) -> list[tuple[str, str]]:
    """(column prefix, legend) of the Dice columns present: whole-volume, then lesion-wise."""
    kinds = [("dice", "whole volume"), ("lesionwise_dice", "lesion-wise")]
    return [(k, name) for k, name in kinds if f"{k}_{REGIONS[0]}" in per_subject.columns]


def plot_dice_box(per_subject: pd.DataFrame, path: Path, dpi: int = 120) -> None:
    """Box plot of test Dice per region, whole-volume and (where the table has it)
    lesion-wise side by side, every subject drawn as a jittered point (a region that is
    not available, NaN throughout: an empty column marked so; a subject without a
    lesion-wise value, no lesion in either mask, is left out of that box)."""
    kinds = _dice_kinds(per_subject)
    width = 0.6 / len(kinds)
    fig, ax = plt.subplots(figsize=(5 + len(kinds) - 1, 4))
    rng = np.random.default_rng(0)
    counts = {r: 0 for r in REGIONS}
    for k, (prefix, name) in enumerate(kinds):
        data = [per_subject[f"{prefix}_{r}"].to_numpy(dtype=float) for r in REGIONS]
        data = [v[~np.isnan(v)] for v in data]
        offset = (k - (len(kinds) - 1) / 2) * width
        where = [i + offset for i in range(1, len(REGIONS) + 1)]
        boxes = ax.boxplot(data, positions=where, widths=width * 0.85, showfliers=False,
                           patch_artist=True, medianprops={"color": "k"}, manage_ticks=False)
        for x, region, values, box in zip(where, REGIONS, data, boxes["boxes"], strict=True):
            counts[region] = max(counts[region], len(values))
            box.set(facecolor=REGION_COLORS[region], alpha=0.3, hatch="//" if k else None)
            ax.scatter(x + rng.uniform(-0.3, 0.3, len(values)) * width, values, s=14,
                       alpha=0.85, color=REGION_COLORS[region], edgecolors="k",
                       linewidths=0.3, zorder=3, marker="o" if k == 0 else "^")
        if len(kinds) > 1:
            ax.scatter([], [], marker="o" if k == 0 else "^", color="grey", label=name)
    ax.set_xticks(range(1, len(REGIONS) + 1),
                  [f"{r}\nn = {counts[r]}" if counts[r] else f"{r}\nnot available"
                   for r in REGIONS])
    ax.set_xlim(0.4, len(REGIONS) + 0.6)
    what = "whole-volume and lesion-wise Dice" if len(kinds) > 1 else "Dice"
    ax.set(ylabel="Dice (3D, per subject)", ylim=(-0.02, 1.02),
           title=f"{scored_as(per_subject)} {what} (n = {len(per_subject)} subjects)")
    if len(kinds) > 1:
        ax.legend(loc="lower left", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    save_png(fig, path, dpi)


def scored_as(per_subject: pd.DataFrame) -> str:
    """How evaluate's subjects were scored: "Test", "Out-of-fold" (cross-validation: each
    by the fold model that never saw it) or "Out-of-fold and test" (its `fold` column)."""
    if "fold" not in per_subject.columns:
        return "Test"
    held_out = per_subject["fold"] >= 0
    return "Out-of-fold" if held_out.all() else "Out-of-fold and test" if held_out.any() else "Test"


TABLE_COLUMNS = {"dice_WT": "Dice WT", "dice_TC": "Dice TC", "dice_ET": "Dice ET",
                 "dice_mean": "Dice mean", "hd95_WT": "HD95 WT", "hd95_TC": "HD95 TC",
                 "hd95_ET": "HD95 ET"}


def metrics_table(per_subject: pd.DataFrame) -> pd.DataFrame:
    """Dice and HD95 (mm) per subject, then their mean and median over subjects."""
    columns = [c for c in TABLE_COLUMNS if c in per_subject.columns]
    table = per_subject.set_index("subject")[columns]
    summary = pd.DataFrame([table.mean(), table.median()], index=["mean", "median"])
    return pd.concat([table, summary]).rename(columns=TABLE_COLUMNS)


def plot_metrics_table(per_subject: pd.DataFrame, path: Path, dpi: int = 120) -> None:
    """The per-subject CSV drawn as a table; Dice cells shaded from red (0) to green (1),
    n/a where a region is not available."""
    table = metrics_table(per_subject)
    text = [[NOT_AVAILABLE if np.isnan(v) else f"{v:.3f}" if name.startswith("Dice")
             else f"{v:.2f}" for name, v in row.items()] for _, row in table.iterrows()]
    cmap = plt.get_cmap("RdYlGn")
    colours = [[(*cmap(v)[:3], 0.45) if name.startswith("Dice") and not np.isnan(v)
                else (1, 1, 1, 1) for name, v in row.items()] for _, row in table.iterrows()]
    fig, ax = plt.subplots(figsize=(0.95 * len(table.columns) + 1.6, 0.25 * (len(table) + 1)))
    ax.axis("off")
    drawn = ax.table(cellText=text, cellColours=colours, rowLabels=list(table.index),
                     colLabels=list(table.columns), cellLoc="right", bbox=[0, 0, 1, 1])
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    for (row, _), cell in drawn.get_celld().items():
        if row == 0 or row > len(per_subject):
            cell.set_text_props(fontweight="bold")
    ax.set_title(f"{scored_as(per_subject)} metrics per subject (HD95 in mm)", fontsize=10)
    save_png(fig, path, dpi)


def plot_histograms(synthetic: dict[str, np.ndarray], real: dict[str, np.ndarray],
                    compartments: dict[str, str], modalities: tuple[str, ...], bins: int,
                    path: Path, dpi: int = 120) -> None:
    """Normalized intensity densities per compartment (rows) and modality (columns)."""
    fig, axes = plt.subplots(len(compartments), len(modalities),
                             figsize=(3.2 * len(modalities), 2.4 * len(compartments)))
    edges = np.linspace(-4, 6, bins + 1)
    for row, (name, label) in enumerate(compartments.items()):
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
    save_png(fig, path, dpi)


def plot_volumes(wt_cm3: np.ndarray, reference: tuple[float, float], path: Path,
                 dpi: int = 120) -> None:
    """Histogram of synthetic whole-tumour volumes against the BraTS range."""
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.axvspan(*reference, color="#e4572e", alpha=0.12, label="BraTS range")
    ax.hist(wt_cm3, bins=np.geomspace(1, 400, 25), color="#1f9bd1", label="synthetic cohort")
    ax.set(xscale="log", xlabel="whole-tumour volume (cm³)", ylabel="subjects")
    ax.legend(fontsize=8)
    save_png(fig, path, dpi)


def plot_side_by_side(synthetic: Subject, real: Subject, path: Path, dpi: int = 120) -> None:
    """Axial slice through the tumour centre, four modalities (one a subject lacks: titled
    not available), synthetic above real."""
    fig, axes = plt.subplots(2, 5, figsize=(14, 6))
    for row, subject in enumerate((synthetic, real)):
        seg = subject.seg if subject.seg is not None else np.zeros(subject.image.shape[1:])
        z = int(np.argmax((seg > 0).sum(axis=(0, 1)))) if seg.any() else seg.shape[2] // 2
        for col, modality in enumerate(MODALITIES):
            if modality not in subject.modalities:  # e.g. no T2 in the LGG layout
                axes[row, col].set_title(f"{subject.subject}: {modality} (not available)",
                                         fontsize=9)
                continue
            plane = subject.image[subject.modalities.index(modality), :, :, z]
            vmax = np.percentile(plane[plane != 0], 99.5) if plane.any() else 1.0
            axes[row, col].imshow(plane.T, cmap="gray", vmin=0, vmax=vmax)
            axes[row, col].set_title(f"{subject.subject}: {modality}", fontsize=9)
        axes[row, 4].imshow(seg[:, :, z].T, cmap="viridis", vmin=0, vmax=4,
                            interpolation="nearest")
        axes[row, 4].set_title("labels (0/1/2/4)", fontsize=9)
    for ax in axes.ravel():
        ax.axis("off")
    save_png(fig, path, dpi)
