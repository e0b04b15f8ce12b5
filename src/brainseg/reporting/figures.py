"""Stage `figures`: learning curves, Dice per region, the per-subject table, overlays of
the best, median and worst scored subject (test, or out-of-fold under cross-validation),
an axial GIF of the median one, and what the training augmentation does to a few training
slices; all logged to the training's MLflow run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.data.split import subjects_in_split
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir
from brainseg.io.nifti import find_nifti, load_nifti, voxel_spacing
from brainseg.reporting.augmentation import plot_augmentations, plot_augmentations_3d
from brainseg.reporting.names import FIGURES
from brainseg.reporting.overlays import animate_axial, plot_overlay
from brainseg.reporting.plots import plot_dice_box, plot_learning_curves, plot_metrics_table
from brainseg.tracking import add_tracking_argument, log_to_run

log = logging.getLogger(__name__)


def pick_cases(per_subject: pd.DataFrame) -> dict[str, str]:
    """Best, median and worst subject by mean Dice over regions (ties: first by id)."""
    ranked = per_subject.sort_values(["dice_mean", "subject"], ascending=[False, True])
    subjects = ranked["subject"].tolist()
    return {"best": subjects[0], "median": subjects[len(subjects) // 2], "worst": subjects[-1]}


def load_case(raw_dir: Path, pred_dir: Path, subject: str) -> tuple[np.ndarray, ...]:
    """FLAIR (x, y, z), reference and predicted labels (uint8) and the voxel size in mm.

    Raises:
        BrainsegError: a file is missing, unreadable, or the grids differ.
    """
    paths = [find_nifti(raw_dir / subject, f"{subject}_{key}") for key in ("flair", "seg")]
    paths.append(find_nifti(pred_dir, f"{subject}_seg"))
    expected = [raw_dir / subject / f"{subject}_flair.nii.gz",
                raw_dir / subject / f"{subject}_seg.nii.gz", pred_dir / f"{subject}_seg.nii.gz"]
    for path, fallback in zip(paths, expected, strict=True):
        if path is None:
            raise BrainsegError(f"{fallback}: missing (needed for the figures of {subject})")
    (flair, img), (ref, _), (pred, _) = (load_nifti(p) for p in paths)
    if not flair.shape == ref.shape == pred.shape:
        raise BrainsegError(f"{paths[2]}: shape {pred.shape} differs from the scan's "
                            f"{flair.shape} or the reference's {ref.shape}")
    spacing = voxel_spacing(img.header)
    return flair, ref.astype(np.uint8), pred.astype(np.uint8), spacing


def case_title(case: str, row: pd.Series) -> str:
    """`best: <subject>  Dice WT 0.912  TC 0.850  ET 0.801` (n/a: a region not available)."""
    dice = {r: row[f"dice_{r}"] for r in REGIONS}
    text = "  ".join(f"{r} {NOT_AVAILABLE if pd.isna(v) else f'{v:.3f}'}" for r, v in dice.items())
    fold = row.get("fold", -1)
    scored = f" (fold {int(fold)}, out-of-fold)" if pd.notna(fold) and fold >= 0 else ""
    return f"{case}: {row.name}{scored}  Dice {text}"


def draw_cases(per_subject: pd.DataFrame, raw_dir: Path, pred_dir: Path, out: Path,
               cfg: dict[str, Any]) -> None:
    """Overlays of the best, median and worst subject, and the GIF of the median one."""
    rows = per_subject.set_index("subject")
    for case, subject in pick_cases(per_subject).items():
        flair, ref, pred, spacing = load_case(raw_dir, pred_dir, subject)
        title = case_title(case, rows.loc[subject])
        plot_overlay(flair, ref, pred, title, out / f"overlay_{case}.png", cfg["dpi"], spacing)
        if case == "median":
            frames = animate_axial(flair, ref, pred, title, out / "overlay_median.gif",
                                   cfg["gif"]["dpi"], cfg["gif"]["max_frames"],
                                   cfg["gif"]["fps"], spacing)
            log.info("GIF of %s: %d axial slices", subject, frames)


def draw_augmentation(params: dict[str, Any], slices_dir: Path, splits_csv: Path,
                      out: Path) -> None:
    """Training slices with tumour (a 3D model: patches) and their augmented versions,
    under `train.augment`."""
    folders = [slices_dir / s for s in subjects_in_split(splits_csv, "train")]
    train = params["train"]
    if train["model"].get("dims", 2) == 3:
        plot_augmentations_3d(folders, train["augment"], train["patch_size"],
                              params["base"]["seed"], out, params["figures"]["dpi"])
    else:
        plot_augmentations(folders, train["augment"], params["base"]["seed"], out,
                           params["figures"]["dpi"])


def run_figures(*, params: dict[str, Any], history: Path, per_subject: Path, raw_dir: Path,
                pred_dir: Path, slices_dir: Path, splits: Path, out_dir: Path,
                run_info: Path | None = None, tracking_uri: str = "") -> list[Path]:
    """Draw every figure into `out_dir` (replaced atomically); returns their paths.

    Args:
        params: the validated params (sections figures, base, train.augment).
        history: the per-epoch CSV of `train`.
        per_subject: the per-subject CSV of `evaluate`.
        raw_dir: the raw NIfTI folder (scans and reference labels).
        pred_dir: the predictions of `evaluate`.
        slices_dir: the training store (slices for the augmentation figure).
        splits: data/splits.csv (its train subjects are shown augmented).
        out_dir: the figure folder.
        run_info: the JSON written by `train`; the figures go to that MLflow run.
        tracking_uri: the MLflow tracking URI (used with `run_info`).
    """
    cfg = params["figures"]
    per_subject_csv, per_subject = per_subject, pd.read_csv(per_subject)
    if per_subject.empty:
        raise BrainsegError(f"{per_subject_csv}: no scored subject to draw")
    with atomic_dir(out_dir) as tmp:
        plot_learning_curves(pd.read_csv(history), tmp / "learning_curves.png", cfg["dpi"])
        plot_dice_box(per_subject, tmp / "dice_boxplot.png", cfg["dpi"])
        plot_metrics_table(per_subject, tmp / "per_subject_table.png", cfg["dpi"])
        draw_cases(per_subject, raw_dir, pred_dir, tmp, cfg)
        draw_augmentation(params, slices_dir, splits, tmp / "augmentation.png")
    paths = [out_dir / name for name in FIGURES]
    if run_info is not None:
        log_to_run(tracking_uri, run_info, "figures", paths)
    log.info("wrote %d figures to %s", len(paths), out_dir)
    return paths


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--history", required=True, type=Path, help="train history CSV")
    parser.add_argument("--per-subject", required=True, type=Path, help="evaluate's CSV")
    parser.add_argument("--raw-dir", required=True, type=Path, help="raw NIfTI folder")
    parser.add_argument("--pred-dir", required=True, type=Path, help="evaluate's predictions")
    parser.add_argument("--slices-dir", required=True, type=Path,
                        help="normalize output (training slices for the augmentation figure)")
    parser.add_argument("--splits", required=True, type=Path, help="data/splits.csv")
    parser.add_argument("--out-dir", required=True, type=Path, help="figure folder")
    parser.add_argument("--run-info", type=Path, default=None,
                        help="JSON written by train; figures are logged to that MLflow run")
    add_tracking_argument(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from brainseg.tracking import tracking_uri

    run_figures(params=params, history=args.history, per_subject=args.per_subject,
                raw_dir=args.raw_dir, pred_dir=args.pred_dir, slices_dir=args.slices_dir,
                splits=args.splits, out_dir=args.out_dir, run_info=args.run_info,
                tracking_uri=tracking_uri(args.tracking_uri))
