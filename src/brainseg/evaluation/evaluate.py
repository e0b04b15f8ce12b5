"""Stage `evaluate`: segment every test subject in 3D and score it the BraTS way.

Writes `<pred-dir>/<subject>_seg.nii.gz` (input grid, affine and header; BraTS labels),
`per_subject.csv` (every whole-volume metric of `metrics.METRICS` and every lesion-wise
metric of `lesions.LESION_METRICS` per subject and region, plus the subject's mean Dice)
and `metrics.json`:
`{"test": {"n_subjects", "dice": {WT, TC, ET, mean}, "hd95": {...}, ...,
"lesionwise_dice": {WT, TC, ET}, ...}` (the means) and
`"test_stats": {metric: {region: {"mean", "std", "median", "q1", "q3"}}}`; and logs the
files and the means to the training's MLflow run.

A lesion-wise value that is not defined (rules brats2025: no lesion in either mask) is
NaN like a region not available (`n/a` in per_subject.csv) and left out of the means.

A region that the test subjects' label maps do not annotate, or that the model was not
trained on (TC and ET of a whole-tumour-only source), is not available: `n/a` in
per_subject.csv, null in metrics.json with `"available": false` in its statistics and
the region listed in `test.not_available`; the mean Dice is over the available regions.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.data.loading import Subject, load_subject
from brainseg.data.split import n_folds, read_splits
from brainseg.evaluation.folds import fold_models
from brainseg.evaluation.inference import (
    load_checkpoint,
    model_inputs,
    predict_probabilities,
    scored_regions,
)
from brainseg.evaluation.labelmaps import PostprocessSettings, apply, read_settings
from brainseg.evaluation.lesions import (
    DEFAULT_RULES,
    LESION_METRICS,
    LesionRules,
    region_lesion_metrics,
)
from brainseg.evaluation.metrics import METRICS, region_metrics
from brainseg.io.atomic import atomic_dir, write_text
from brainseg.io.nifti import save_nifti
from brainseg.parallel import read_ahead
from brainseg.runtime import add_runtime_arguments, resolve_device, set_threads
from brainseg.tracking import log_to_run, tag_model_version

log = logging.getLogger(__name__)
#: Every column of a subject's scores, per region: whole-volume, then lesion-wise.
ALL_METRICS: tuple[str, ...] = (*METRICS, *LESION_METRICS)


def describe(values: pd.Series) -> dict[str, float | None]:
    """Mean, sample standard deviation (n - 1; None for one subject), median and quartiles.

    Quartiles use linear interpolation between order statistics (numpy's default). NaN
    (not available) values are left out; with none left, every statistic is None and
    "available" is False.
    """
    x = values.to_numpy(dtype=np.float64)
    x = x[~np.isnan(x)]
    if not x.size:
        return {"available": False, **dict.fromkeys(("mean", "std", "median", "q1", "q3"))}
    q1, median, q3 = np.percentile(x, [25, 50, 75])
    std = float(np.std(x, ddof=1)) if x.size > 1 else None
    return {"mean": float(np.mean(x)), "std": std, "median": float(median),
            "q1": float(q1), "q3": float(q3)}


def summarize(per_subject: pd.DataFrame) -> dict[str, Any]:
    """Aggregate the per-subject table over subjects.

    Returns:
        {"test": {"n_subjects", metric: {region: mean}}, with "dice"."mean" the mean Dice
        over the available regions (and "not_available": the others, if any), and
        "test_stats": {metric: {region: describe(...)}}, where "dice"."mean" describes
        the per-subject mean Dice.
    """
    summary: dict[str, Any] = {"n_subjects": len(per_subject)}
    stats: dict[str, Any] = {}
    for metric in ALL_METRICS:
        stats[metric] = {r: describe(per_subject[f"{metric}_{r}"]) for r in REGIONS}
        summary[metric] = {r: stats[metric][r]["mean"] for r in REGIONS}
    available = [r for r in REGIONS if summary["dice"][r] is not None]
    summary["dice"]["mean"] = float(np.mean([summary["dice"][r] for r in available]))
    stats["dice"]["mean"] = describe(per_subject["dice_mean"])
    if len(available) < len(REGIONS):
        summary["not_available"] = [r for r in REGIONS if r not in available]
    return {"test": summary, "test_stats": stats}


def scoring_plan(model: torch.nn.Module, splits: pd.DataFrame
                 ) -> list[tuple[int | None, torch.nn.Module, list[str]]]:
    """(fold, model, subjects) triples to score: who is predicted by which model.

    Without folds: the model on the test subjects. With cross-validation folds (the
    model is their `Ensemble`): each fold's own model on the fold's held-out subjects
    (out-of-fold, every training subject scored once by a model that never saw it),
    then the ensemble on the test subjects, if any (fold -1).
    """
    test = sorted(splits.loc[splits["split"] == "test", "subject"])
    if n_folds(splits) < 2:
        return [(None, model, test)]
    plan = fold_models(model, splits, "evaluate")
    return plan + ([(-1, model, test)] if test else [])


def summarize_cv(per_subject: pd.DataFrame) -> dict[str, Any]:
    """metrics.json of a cross-validation: `cv` (out-of-fold, pooled), `cv_folds` (the
    means of each fold) and, with a test set, `test` (the ensemble on it)."""
    oof = per_subject[per_subject["fold"] >= 0].drop(columns="fold")
    pooled = summarize(oof)
    out: dict[str, Any] = {"cv": pooled["test"], "cv_stats": pooled["test_stats"]}
    out["cv_folds"] = {str(f): summarize(g.drop(columns="fold"))["test"]
                       for f, g in per_subject[per_subject["fold"] >= 0].groupby("fold")}
    test = per_subject[per_subject["fold"] < 0]
    if len(test):
        out.update(summarize(test.drop(columns="fold")))
    return out


def run_evaluate(*, params: dict[str, Any], model: Path, splits: Path, raw_dir: Path,
                 pred_dir: Path, per_subject_out: Path, metrics_out: Path,
                 run_info: Path | None = None, tracking_uri: str = "", device: str = "cpu",
                 postprocess: Path | None = None) -> dict:
    """Predict, write and score every test subject; returns the metrics.json content.

    Args:
        params: the validated params (section evaluate).
        model: the checkpoint written by `train`.
        splits: data/splits.csv: its test subjects are evaluated, and with
            cross-validation folds also the held-out subjects of every fold, each by its
            fold's model (see `scoring_plan`); per_subject.csv then gets a `fold` column
            (-1: a test subject, scored by the ensemble).
        raw_dir: the raw NIfTI folder (data/raw).
        pred_dir: where `<subject>_seg.nii.gz` are written (replaced atomically).
        per_subject_out: the per-subject CSV.
        metrics_out: metrics.json.
        run_info: the JSON written by `train`; metrics and files go to that MLflow run.
        tracking_uri: the MLflow tracking URI (used with `run_info`).
        device: torch device.
        postprocess: settings chosen by the `postprocess` stage; without them, the plain
            prediction (`evaluate.threshold` for every region).
    """
    cfg = params["evaluate"]
    settings = (read_settings(postprocess) if postprocess is not None
                else PostprocessSettings.uniform(cfg["threshold"]))
    rules = LesionRules.from_params(cfg["lesionwise"])
    net, config = load_checkpoint(model, device)
    table = read_splits(splits)
    cv = n_folds(table) >= 2
    rows = []
    with atomic_dir(pred_dir) as tmp:
        for fold, member, subjects in scoring_plan(net, table):
            # the next subject is read while the network runs on this one
            for subject, loaded in tqdm(read_ahead(read_native, [raw_dir / s for s in subjects]),
                                        total=len(subjects), desc="evaluate", unit="subject"):
                row = {"subject": subject.name, **({"fold": fold} if cv else {})}
                row.update(score_subject(member, config, subject, settings, cfg["batch_size"],
                                         device, tmp, rules, loaded()))
                rows.append(row)
    per_subject = pd.DataFrame(rows)
    write_text(per_subject_out, per_subject.to_csv(index=False, lineterminator="\n",
                                                   na_rep=NOT_AVAILABLE))
    metrics = summarize_cv(per_subject) if cv else summarize(per_subject)
    write_text(metrics_out, json.dumps(metrics, indent=2, allow_nan=False) + "\n")
    for key in ("cv", "test"):
        if key in metrics:
            log.info("%s Dice: %s", key, {k: None if v is None else round(v, 4)
                                          for k, v in metrics[key]["dice"].items()})
    if run_info is not None:
        key = "test" if "test" in metrics else "cv"
        test = metrics[key]
        scores = {f"{key}_{m}_{r}": v for m in ALL_METRICS for r, v in test[m].items()
                  if v is not None}
        log_to_run(tracking_uri, run_info, "evaluation", [per_subject_out, metrics_out], scores)
        tag_model_version(tracking_uri, run_info, {
            k: v for k, v in scores.items() if k.startswith((f"{key}_dice", f"{key}_hd95"))})
    return metrics


def read_native(folder: Path) -> Subject:
    """A raw subject as scoring reads it: native volumes (only read by extract_slices)."""
    return load_subject(folder, native=True)


def score_subject(model: torch.nn.Module, config: dict[str, Any], folder: Path,
                  settings: PostprocessSettings, batch_size: int, device: str,
                  pred_dir: Path, rules: LesionRules = DEFAULT_RULES,
                  loaded: Subject | None = None) -> dict[str, float]:
    """Segment one raw subject, write `<pred_dir>/<subject>_seg.nii.gz`, return its
    whole-volume and lesion-wise metrics (`rules`), NaN for a region it does not annotate
    or the model was not trained on. `loaded`: the folder already read by `read_native`."""
    if loaded is None:
        loaded = read_native(folder)
    image = model_inputs(config, loaded.image, loaded.modalities, folder)
    probs = predict_probabilities(model, config, image, batch_size, device, settings.flip_tta)
    labels = apply(probs, settings, loaded.spacing)
    save_nifti(pred_dir / f"{folder.name}_seg.nii.gz", labels, loaded.affine, loaded.header)
    return score_labels(labels, loaded, scored_regions(config, loaded.regions), rules)


def score_labels(labels: np.ndarray, loaded: Subject, regions: tuple[str, ...],
                 rules: LesionRules = DEFAULT_RULES) -> dict[str, float]:
    """A subject's row of per_subject.csv for a predicted label map on its grid.

    Args:
        labels: predicted BraTS labels (x, y, z) on the grid of `loaded` (values 0/1/2/4).
        loaded: the subject with its reference (`read_native`).
        regions: the regions to score; every metric of the others is NaN.
        rules: how lesions are matched and scored.

    Returns:
        {"<metric>_<region>": value} for every whole-volume and lesion-wise metric, and
        "dice_mean" over `regions`.
    """
    scores = region_metrics(labels, loaded.seg, loaded.spacing, regions)
    lesions = region_lesion_metrics(labels, loaded.seg, loaded.spacing, regions, rules)
    row = {f"{m}_{r}": scores[r][m] for m in METRICS for r in REGIONS}
    row.update({f"{m}_{r}": lesions[r][m] for m in LESION_METRICS for r in REGIONS})
    row["dice_mean"] = float(np.mean([scores[r]["dice"] for r in regions]))
    return row


def add_model_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The inputs shared by `evaluate` and `postprocess`: model, splits, raw scans."""
    parser.add_argument("--model", required=True, type=Path, help="checkpoint from train")
    parser.add_argument("--splits", required=True, type=Path, help="data/splits.csv")
    parser.add_argument("--raw-dir", required=True, type=Path, help="raw NIfTI folder (data/raw)")


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_model_data_arguments(parser)
    parser.add_argument("--pred-dir", required=True, type=Path, help="where to write predictions")
    parser.add_argument("--per-subject-out", required=True, type=Path, help="per-subject CSV")
    parser.add_argument("--metrics-out", required=True, type=Path, help="metrics JSON")
    parser.add_argument("--run-info", type=Path, default=None,
                        help="JSON written by train; metrics are logged to that MLflow run")
    parser.add_argument("--postprocess", type=Path, default=None,
                        help="settings from `brainseg postprocess` (reports/postprocess.json); "
                        "default: evaluate.threshold for every region, no clean-up")
    add_runtime_arguments(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from brainseg.tracking import tracking_uri

    set_threads(args.threads)
    run_evaluate(params=params, model=args.model, splits=args.splits, raw_dir=args.raw_dir,
                 pred_dir=args.pred_dir, per_subject_out=args.per_subject_out,
                 metrics_out=args.metrics_out, run_info=args.run_info,
                 tracking_uri=tracking_uri(args.tracking_uri),
                 device=resolve_device(args.device), postprocess=args.postprocess)
