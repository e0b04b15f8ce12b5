"""Stage `realism`: how close is the synthetic cohort to real scans?

Compares, after the pipeline's own preprocessing (crop, resize, z-score), the
per-modality intensity distributions inside normal-appearing brain, edema and tumour
core of synthetic subjects and of real BraTS subjects (one subject folder, or a folder
of them such as the 20 real subjects of the manifest source); the synthetic
whole-tumour volumes against BraTS's range; and shows slices side by side. Given the
trained model, it also segments every real subject and scores it: the Dice a model
trained on synthetic data alone reaches on real scans (per subject, mean and spread).
Given a real-cohort summary (`brainseg cohort-stats --fit`), it also computes the same
statistics (intensity, texture, tumour shape) on the synthetic subjects and tabulates the
standardized gap of each (`brainseg.reporting.cohort_gaps`).
Intensities are compared for the modalities both sides have (no T2 in the LGG layout);
a region the real labels do not annotate, or the model was not trained on, is not scored.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.labels import REGIONS, region_mask
from brainseg.data.layouts import recorded_modalities
from brainseg.data.loading import Subject, load_subject
from brainseg.data.manifest import read_manifest
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir, write_text

log = logging.getLogger(__name__)
# Whole-tumour volumes of BraTS training cases span roughly this range (cm³).
BRATS_WT_RANGE_CM3 = (10.0, 250.0)
#: The tissue compartments whose intensities are compared, and their names in the figure.
COMPARTMENTS = {"brain": "normal-appearing brain", "edema": "edema (2)",
                "core": "tumour core (1, 4)"}


def compartment_values(subject: Subject, params: dict[str, Any],
                       modalities: tuple[str, ...] = MODALITIES) -> dict[str, np.ndarray]:
    """Normalized intensities (n, m) of the m `modalities` per compartment, exactly as
    training sees them (a whole-tumour-only label map tells no edema from core: both empty).
    """
    ext = params["extract"]
    image = [subject.image[subject.modalities.index(m)] for m in modalities]
    slices, labels, brain, _ = extract_slices(image, subject.seg, ext["image_size"],
                                              ext["margin"], ext["min_brain_pixels"])
    normed, _ = normalize_slices(slices, brain, tuple(params["normalize"]["clip_percentiles"]))
    pixels = normed.transpose(0, 2, 3, 1).astype(np.float32)  # (s, h, w, m)
    annotated = "TC" in subject.regions
    masks = {"brain": brain & (labels == 0), "edema": (labels == 2) & annotated,
             "core": region_mask(labels, "TC") & annotated}
    return {name: pixels[mask] for name, mask in masks.items()}


def intensity_stats(values: dict[str, np.ndarray]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation per compartment and modality."""
    return {name: {"mean": v.mean(0).round(4).tolist() if len(v) else [],
                   "std": v.std(0).round(4).tolist() if len(v) else []}
            for name, v in values.items()}


def shared_modalities(subjects: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The modalities that every one of the subjects' modality lists holds, in `MODALITIES`
    order."""
    return tuple(m for m in MODALITIES if all(m in s for s in subjects))


def pooled(subjects: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([s[name] for s in subjects]) for name in COMPARTMENTS}


def real_folders(path: Path) -> list[Path]:
    """The real subjects under `path`: the folder itself if it holds a subject's files,
    else its visible subfolders (sorted)."""
    path = Path(path)
    if not path.is_dir():
        raise BrainsegError(f"{path}: real subject folder not found")
    if any(p.name.endswith("_t1.nii.gz") for p in path.iterdir()):
        return [path]
    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise BrainsegError(f"{path}: no real subject (BraTS 2020 names) found")
    return folders


def score_real(model_path: Path, reals: list[Subject], params: dict[str, Any]
               ) -> dict[str, Any]:
    """Segment every real subject with the trained model (plain threshold).

    Returns:
        {"per_subject": [{"subject", "dice_WT", "hd95_WT", ...}], "dice": {region:
        {"mean", "std", "median", "min"}}, "hd95": {...}}; a region that is not available
        (not annotated, or not trained on) is null per subject and `{"available": false}`.
    """
    from brainseg.evaluation.inference import (
        load_checkpoint,
        model_inputs,
        predict_volume,
        scored_regions,
    )
    from brainseg.evaluation.metrics import region_metrics

    model, config = load_checkpoint(model_path)
    rows = []
    for real in reals:
        image = model_inputs(config, real.image, real.modalities, real.subject)
        labels = predict_volume(model, config, image, params["evaluate"]["threshold"],
                                params["evaluate"]["batch_size"])
        scores = region_metrics(labels, real.seg, real.spacing,
                                scored_regions(config, real.regions))
        rows.append({"subject": real.subject, **{
            f"{m}_{r}": None if np.isnan(scores[r][m]) else scores[r][m]
            for r in scores for m in ("dice", "hd95")}})
    out: dict[str, Any] = {"n_subjects": len(rows), "per_subject": rows}
    for metric in ("dice", "hd95"):
        out[metric] = {}
        for region in REGIONS:
            x = np.array([r[f"{metric}_{region}"] for r in rows if r[f"{metric}_{region}"]
                          is not None], dtype=np.float64)
            out[metric][region] = {"available": False} if not len(x) else {
                "mean": float(x.mean()), "median": float(np.median(x)),
                "std": float(x.std(ddof=1)) if len(x) > 1 else None, "min": float(x.min())}
    return out


def compare_cohorts(params: dict[str, Any], raw_dir: Path, chosen: list[str],
                    real: dict[str, Any], modalities: tuple[str, ...], out_dir: Path
                    ) -> dict[str, Any]:
    """The synthetic subjects' statistics against the real summary `real` (of
    `read_summary`): writes the table (cohort_gaps.csv, cohort_gaps.json) and the figures
    (cohort_intensity.png, cohort_gaps.png) into `out_dir`; returns the distances and
    the 5 largest gaps."""
    from brainseg.data.cohort_stats import cohort_stats, summarize
    from brainseg.reporting.cohort_gaps import (
        distances,
        gap_table,
        plot_gaps,
        plot_intensities,
        top_gaps,
        write_csv,
    )

    fitted = real["provenance"].get("preprocessing", {})
    matches = fitted == {"extract": dict(params["extract"]),
                         "normalize": dict(params["normalize"])}
    if not matches:
        log.warning("the real summary was fitted with other extract/normalize params (%s): "
                    "the gaps compare differently preprocessed volumes", fitted)
    synthetic = summarize(cohort_stats([raw_dir / s for s in chosen], params))
    rows = gap_table(synthetic, real["stats"])
    gaps = {"real_source": real["provenance"].get("source"),
            "real_subjects": real["n_subjects"], "preprocessing_matches": matches,
            "distance": distances(rows),
            "top": [{"statistic": r["statistic"], "gap": r["gap"]} for r in top_gaps(rows)]}
    write_csv(rows, out_dir / "cohort_gaps.csv")
    write_text(out_dir / "cohort_gaps.json",
               json.dumps({**gaps, "table": rows}, indent=1) + "\n")
    dpi = params["figures"]["dpi"]
    plot_intensities(synthetic, real["stats"], modalities, out_dir / "cohort_intensity.png", dpi)
    plot_gaps(rows, out_dir / "cohort_gaps.png", dpi)
    log.info("synthetic vs real %s: distance %s; largest gaps %s", gaps["real_source"],
             gaps["distance"]["all"], [(t["statistic"], t["gap"]) for t in gaps["top"]])
    return gaps


def run_realism(*, params: dict[str, Any], raw_dir: Path, real: Path, out_dir: Path,
                summary_out: Path, model: Path | None = None,
                real_stats: Path | None = None) -> dict[str, Any]:
    """Compare up to `realism.max_subjects` synthetic subjects with real subjects.

    Args:
        params: the validated params (sections realism, extract, normalize, evaluate, figures).
        raw_dir: the synthetic cohort (data/raw, with manifest.csv).
        real: a real subject folder in BraTS 2020 layout, or a folder of them.
        out_dir: the figure folder (replaced atomically).
        summary_out: the JSON summary.
        model: a trained checkpoint: every real subject is also segmented and scored.
        real_stats: a real-cohort summary (`brainseg cohort-stats --fit`): the synthetic
            subjects' statistics are compared with it (`compare_cohorts`).
    """
    from brainseg.data.cohort_stats import read_summary
    from brainseg.reporting.plots import plot_histograms, plot_side_by_side, plot_volumes

    real_summary = None if real_stats is None else read_summary(real_stats)  # checked first
    manifest = read_manifest(raw_dir / "manifest.csv")
    chosen = manifest.sort_values("wt_cm3")["subject"].tolist()
    step = max(1, len(chosen) // params["realism"]["max_subjects"])
    chosen = chosen[::step][: params["realism"]["max_subjects"]]
    reals = [load_subject(folder) for folder in real_folders(real)]
    modalities = shared_modalities([recorded_modalities(raw_dir / s) for s in chosen]
                                   + [r.modalities for r in reals])
    synthetic = pooled([compartment_values(load_subject(raw_dir / s), params, modalities)
                        for s in chosen])
    # every 4th voxel of each real subject: the histograms of 20 subjects in little memory
    real_values = pooled([{k: v[::4] for k, v in compartment_values(r, params, modalities).items()}
                          for r in reals])
    wt = manifest["wt_cm3"].to_numpy()
    summary: dict[str, Any] = {
        "synthetic_subjects": chosen, "real_subjects": [r.subject for r in reals],
        "modalities": list(modalities),
        "intensity": {"synthetic": intensity_stats(synthetic),
                      "real": intensity_stats(real_values)},
        "wt_cm3": {"min": float(wt.min()), "median": float(np.median(wt)),
                   "max": float(wt.max()), "brats_range": list(BRATS_WT_RANGE_CM3)},
    }
    if model is not None:
        summary["real_scores"] = score_real(model, reals, params)
        log.info("synthetic-trained model on %d real subjects: mean Dice %s", len(reals),
                 {r: round(v["mean"], 3) for r, v in summary["real_scores"]["dice"].items()
                  if "mean" in v})
    dpi, bins = params["figures"]["dpi"], params["realism"]["bins"]
    median_subject = manifest.iloc[(manifest["wt_cm3"] - np.median(wt)).abs().argsort()[0]]
    with atomic_dir(out_dir) as tmp:
        plot_histograms(synthetic, real_values, COMPARTMENTS, modalities, bins,
                        tmp / "histograms.png", dpi)
        plot_volumes(wt, BRATS_WT_RANGE_CM3, tmp / "tumour_volumes.png", dpi)
        plot_side_by_side(load_subject(raw_dir / median_subject["subject"]), reals[0],
                          tmp / "synthetic_vs_real.png", dpi)
        if real_summary is not None:
            summary["cohort_gaps"] = compare_cohorts(params, raw_dir, chosen, real_summary,
                                                     modalities, tmp)
    write_text(summary_out, json.dumps(summary, indent=1) + "\n")
    return summary


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", required=True, type=Path,
                        help="the synthetic cohort (data/raw, with manifest.csv)")
    parser.add_argument("--real", required=True, type=Path,
                        help="a real subject folder in BraTS 2020 layout, or a folder of them "
                        "(tests/data/real; ../shared/fixtures/brats18 for 20 real subjects)")
    parser.add_argument("--model", type=Path, default=None,
                        help="trained checkpoint: also segment and score every real subject")
    parser.add_argument("--real-stats", type=Path, default=None,
                        help="a real-cohort summary (`brainseg cohort-stats --fit`; "
                        "workflow/real_stats/brats18_tune.json): tabulate the synthetic "
                        "cohort's gap to it")
    parser.add_argument("--out-dir", required=True, type=Path, help="figure folder")
    parser.add_argument("--summary-out", required=True, type=Path, help="JSON summary")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_realism(params=params, raw_dir=args.raw_dir, real=args.real, out_dir=args.out_dir,
                summary_out=args.summary_out, model=args.model, real_stats=args.real_stats)

