"""Stage `figures`: learning curves, test Dice per region, and overlays of the best,
median and worst test subject; logged to the training's MLflow run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from brainseg.io.atomic import atomic_dir
from brainseg.io.nifti import find_nifti
from brainseg.params import load_params
from brainseg.reporting.plots import plot_dice_box, plot_learning_curves, plot_overlay
from brainseg.tracking import add_tracking_argument, log_to_run, tracking_uri

log = logging.getLogger(__name__)
FIGURES = ("learning_curves", "dice_boxplot", "overlay_best", "overlay_median", "overlay_worst")


def pick_cases(per_subject: pd.DataFrame) -> dict[str, str]:
    """Best, median and worst subject by mean Dice over regions (ties: first by id)."""
    ranked = per_subject.sort_values(["dice_mean", "subject"], ascending=[False, True])
    subjects = ranked["subject"].tolist()
    return {"best": subjects[0], "median": subjects[len(subjects) // 2], "worst": subjects[-1]}


def run_figures(params: dict[str, Any], history: Path, per_subject_csv: Path, raw_dir: Path,
                pred_dir: Path, out_dir: Path, run_info: Path | None, uri: str) -> list[Path]:
    """Draw every figure into `out_dir` (replaced atomically); returns their paths."""
    dpi = params["figures"]["dpi"]
    per_subject = pd.read_csv(per_subject_csv)
    with atomic_dir(out_dir) as tmp:
        plot_learning_curves(pd.read_csv(history), tmp / "learning_curves.png", dpi)
        plot_dice_box(per_subject, tmp / "dice_boxplot.png", dpi)
        for case, subject in pick_cases(per_subject).items():
            flair = np.asarray(nib.load(find_nifti(raw_dir / subject, f"{subject}_flair")).dataobj)
            ref = np.asarray(nib.load(find_nifti(raw_dir / subject, f"{subject}_seg")).dataobj)
            pred = np.asarray(nib.load(pred_dir / f"{subject}_seg.nii.gz").dataobj)
            row = per_subject.set_index("subject").loc[subject]
            title = (f"{case}: {subject}  Dice WT {row['dice_WT']:.3f}  TC {row['dice_TC']:.3f}"
                     f"  ET {row['dice_ET']:.3f}")
            plot_overlay(flair, ref, pred, title, tmp / f"overlay_{case}.png", dpi)
    paths = [out_dir / f"{name}.png" for name in FIGURES]
    if run_info is not None:
        log_to_run(uri, run_info, "figures", paths)
    log.info("wrote %d figures to %s", len(paths), out_dir)
    return paths


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params.yaml to read (validated)")
    parser.add_argument("--history", required=True, type=Path, help="train history CSV")
    parser.add_argument("--per-subject", required=True, type=Path, help="evaluate's CSV")
    parser.add_argument("--raw-dir", required=True, type=Path, help="raw NIfTI folder")
    parser.add_argument("--pred-dir", required=True, type=Path, help="evaluate's predictions")
    parser.add_argument("--out-dir", required=True, type=Path, help="figure folder")
    parser.add_argument("--run-info", type=Path, default=None,
                        help="JSON written by train; figures are logged to that MLflow run")
    add_tracking_argument(parser)


def main(args: argparse.Namespace) -> None:
    run_figures(load_params(args.params), args.history, args.per_subject, args.raw_dir,
                args.pred_dir, args.out_dir, args.run_info, tracking_uri(args.tracking_uri))
