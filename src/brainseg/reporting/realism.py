"""Stage `realism`: how close is the synthetic cohort to a real scan?

Compares, after the pipeline's own preprocessing (crop, resize, z-score), the
per-modality intensity distributions inside normal-appearing brain, edema and tumour
core of synthetic subjects and of a real BraTS case; the synthetic whole-tumour
volumes against BraTS's range; and shows slices side by side. Given the trained
model, it also segments the real case and scores it: the Dice a model trained on
synthetic data alone reaches on a real scan.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.labels import region_mask
from brainseg.data.loading import Subject, load_subject
from brainseg.data.manifest import read_manifest
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.io.atomic import atomic_dir, write_text

log = logging.getLogger(__name__)
# Whole-tumour volumes of BraTS training cases span roughly this range (cm³).
BRATS_WT_RANGE_CM3 = (10.0, 250.0)
#: The tissue compartments whose intensities are compared, and their names in the figure.
COMPARTMENTS = {"brain": "normal-appearing brain", "edema": "edema (2)",
                "core": "tumour core (1, 4)"}


def compartment_values(subject: Subject, params: dict[str, Any]) -> dict[str, np.ndarray]:
    """Normalized intensities (n, 4) per compartment, exactly as training sees them."""
    ext = params["extract"]
    slices, labels, brain, _ = extract_slices(subject.image, subject.seg, ext["image_size"],
                                              ext["margin"], ext["min_brain_pixels"])
    normed, _ = normalize_slices(slices, brain, tuple(params["normalize"]["clip_percentiles"]))
    pixels = normed.transpose(0, 2, 3, 1).astype(np.float32)  # (s, h, w, 4)
    masks = {"brain": brain & (labels == 0), "edema": labels == 2,
             "core": region_mask(labels, "TC")}
    return {name: pixels[mask] for name, mask in masks.items()}


def intensity_stats(values: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation per compartment and modality."""
    return {name: {"mean": v.mean(0).round(4).tolist() if len(v) else [],
                   "std": v.std(0).round(4).tolist() if len(v) else []}
            for name, v in values.items()}


def pooled(subjects: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([s[name] for s in subjects]) for name in COMPARTMENTS}


def score_real(model_path: Path, real: Subject, params: dict[str, Any]) -> dict[str, float]:
    """Segment the real case with the trained model; Dice per region."""
    from brainseg.evaluation.inference import load_checkpoint, predict_volume
    from brainseg.evaluation.metrics import region_metrics

    model, config = load_checkpoint(model_path)
    labels = predict_volume(model, config, real.image, params["evaluate"]["threshold"],
                            params["evaluate"]["batch_size"])
    scores = region_metrics(labels, real.seg, real.spacing)
    return {f"{m}_{r}": scores[r][m] for r in scores for m in ("dice", "hd95")}


def run_realism(*, params: dict[str, Any], raw_dir: Path, real: Path, out_dir: Path,
                summary_out: Path, model: Path | None = None) -> dict[str, Any]:
    """Compare up to `realism.max_subjects` synthetic subjects with the real case.

    Args:
        params: the validated params (sections realism, extract, normalize, evaluate, figures).
        raw_dir: the synthetic cohort (data/raw, with manifest.csv).
        real: a real subject folder in BraTS 2020 layout.
        out_dir: the figure folder (replaced atomically).
        summary_out: the JSON summary.
        model: a trained checkpoint: the real case is also segmented and scored.
    """
    from brainseg.reporting.plots import plot_histograms, plot_side_by_side, plot_volumes

    manifest = read_manifest(raw_dir / "manifest.csv")
    chosen = manifest.sort_values("wt_cm3")["subject"].tolist()
    step = max(1, len(chosen) // params["realism"]["max_subjects"])
    chosen = chosen[::step][: params["realism"]["max_subjects"]]
    synthetic = pooled([compartment_values(load_subject(raw_dir / s), params) for s in chosen])
    case = load_subject(real)
    real_values = compartment_values(case, params)
    wt = manifest["wt_cm3"].to_numpy()
    summary: dict[str, Any] = {
        "synthetic_subjects": chosen, "real_case": case.subject,
        "intensity": {"synthetic": intensity_stats(synthetic),
                      "real": intensity_stats(real_values)},
        "wt_cm3": {"min": float(wt.min()), "median": float(np.median(wt)),
                   "max": float(wt.max()), "brats_range": list(BRATS_WT_RANGE_CM3)},
    }
    if model is not None:
        summary["real_scan"] = score_real(model, case, params)
        log.info("synthetic-trained model on %s: %s", case.subject, summary["real_scan"])
    dpi, bins = params["figures"]["dpi"], params["realism"]["bins"]
    median_subject = manifest.iloc[(manifest["wt_cm3"] - np.median(wt)).abs().argsort()[0]]
    with atomic_dir(out_dir) as tmp:
        plot_histograms(synthetic, real_values, COMPARTMENTS, MODALITIES, bins,
                        tmp / "histograms.png", dpi)
        plot_volumes(wt, BRATS_WT_RANGE_CM3, tmp / "tumour_volumes.png", dpi)
        plot_side_by_side(load_subject(raw_dir / median_subject["subject"]), case,
                          tmp / "synthetic_vs_real.png", dpi)
    write_text(summary_out, json.dumps(summary, indent=1) + "\n")
    return summary


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", required=True, type=Path,
                        help="the synthetic cohort (data/raw, with manifest.csv)")
    parser.add_argument("--real", required=True, type=Path,
                        help="a real subject folder in BraTS 2020 layout "
                        "(tests/data/real/TCGA-DU-7294)")
    parser.add_argument("--model", type=Path, default=None,
                        help="trained checkpoint: also segment and score the real case")
    parser.add_argument("--out-dir", required=True, type=Path, help="figure folder")
    parser.add_argument("--summary-out", required=True, type=Path, help="JSON summary")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_realism(params=params, raw_dir=args.raw_dir, real=args.real, out_dir=args.out_dir,
                summary_out=args.summary_out, model=args.model)

