"""Stage `postprocess`: choose the post-processing on the validation split.

Every validation subject is predicted once (region probabilities with and without flip
test-time augmentation, kept in memory, cropped to where any setting tried can predict
tumour or the reference has some). Then the options are tried greedily, in the fixed
order and with the rule for keeping a step written once in docs/conventions.md ("How the
settings are chosen"): flip TTA, the thresholds of WT, TC, ET, small-component removal,
ET to necrosis, each kept only if it raises the mean validation Dice by more than
`postprocess.min_gain`. A region that no validation label map annotates, or that the model
was not trained on (TC and ET of a whole-tumour-only source), is not tuned (its steps are
not tried), its Dice is NaN (`n/a` in postprocess.csv), and the mean is over the others.

Writes `postprocess.json` (the chosen settings, read by `evaluate`) and `postprocess.csv`
(every setting tried), and adds both files and metrics to the training's MLflow run (the
names are in the same section of docs/conventions.md).
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from brainseg.data.boxes import bounding_box
from brainseg.data.labels import NOT_AVAILABLE, REGIONS, labels_to_regions
from brainseg.data.loading import load_subject
from brainseg.data.preprocess import to_original_grid
from brainseg.data.split import n_folds, read_splits, subjects_in_split
from brainseg.evaluation.evaluate import add_model_data_arguments
from brainseg.evaluation.folds import fold_models
from brainseg.evaluation.inference import (
    load_checkpoint,
    model_inputs,
    predict_normalized,
    predict_normalized_tta,
    prepare_volume,
    scored_regions,
    trained_only,
)
from brainseg.evaluation.labelmaps import PostprocessSettings, apply, write_settings
from brainseg.evaluation.metrics import dice
from brainseg.io.atomic import write_text
from brainseg.params import flatten
from brainseg.runtime import add_runtime_arguments, resolve_device, set_threads
from brainseg.tracking import log_to_run

log = logging.getLogger(__name__)
SEARCH_COLUMNS = ["step", "option", "value", *(f"dice_{r}" for r in REGIONS), "dice_mean",
                  "gain", "chosen"]


@dataclass
class Case:
    """One validation subject, cropped to the box where anything can be predicted.

    Attributes:
        subject: subject id.
        probs: region probabilities (3, bx, by, bz), keyed by flip_tta (False, True).
        ref: bool reference regions (3, bx, by, bz).
        spacing: voxel size in mm.
        regions: the regions it is scored on (the others are not available).
    """

    subject: str
    probs: dict[bool, np.ndarray]
    ref: np.ndarray
    spacing: tuple[float, ...]
    regions: tuple[str, ...] = REGIONS


def make_case(subject: str, probs: dict[bool, np.ndarray], seg: np.ndarray,
              spacing: tuple[float, ...], floor: float,
              regions: tuple[str, ...] = REGIONS) -> Case:
    """Crop the probabilities and reference to where a threshold above `floor` can matter.

    Exact for every setting whose thresholds are >= floor: outside the box no voxel is
    predicted and none is in the reference, so Dice and connected components are unchanged.
    When nothing can be predicted and the reference is empty, the box is one voxel.
    """
    ref = labels_to_regions(seg)
    union = np.logical_or.reduce([ref[0], *((p > floor).any(axis=0) for p in probs.values())])
    box = bounding_box(union) or (slice(0, 1),) * union.ndim
    full = (slice(None), *box)
    return Case(subject, {k: np.ascontiguousarray(p[full]) for k, p in probs.items()},
                np.ascontiguousarray(ref[full]), spacing, regions)


def predict_cases(model: torch.nn.Module, config: dict[str, Any], raw_dir: Path,
                  subjects: list[str], batch_size: int, device: str, with_tta: bool,
                  floor: float) -> list[Case]:
    """Predict every subject once: without flip TTA, and with it when `with_tta`."""
    cases = []
    for subject in tqdm(subjects, desc="postprocess", unit="subject"):
        loaded = load_subject(raw_dir / subject, native=True)  # only read by extract_slices
        image = model_inputs(config, loaded.image, loaded.modalities, raw_dir / subject)
        normed, geo = prepare_volume(config, image)
        if with_tta:
            plain, tta = predict_normalized_tta(model, config, normed, batch_size, device)
            probs = {False: to_original_grid(plain, geo), True: to_original_grid(tta, geo)}
        else:
            probs = {False: to_original_grid(
                predict_normalized(model, config, normed, batch_size, device), geo)}
        probs = {k: trained_only(p, config) for k, p in probs.items()}
        cases.append(make_case(subject, probs, loaded.seg, loaded.spacing, floor,
                               scored_regions(config, loaded.regions)))
    return cases


def score(cases: list[Case], settings: PostprocessSettings) -> dict[str, float]:
    """Mean validation Dice per region and their mean, under `settings`.

    A region is scored on the cases that annotate it; one that no case annotates has NaN,
    and the mean is over the others.
    """
    return mean_dice([case_dice(case, settings) for case in cases])


def case_dice(case: Case, settings: PostprocessSettings) -> list[float]:
    """Dice of each region of one case under `settings` (NaN: not annotated)."""
    pred = labels_to_regions(apply(case.probs[settings.flip_tta], settings, case.spacing))
    return [dice(pred[i], case.ref[i]) if r in case.regions else np.nan
            for i, r in enumerate(REGIONS)]


def mean_dice(per_subject: list[list[float]]) -> dict[str, float]:
    """Per region, the mean over the subjects that annotate it; "mean" over the regions."""
    table = np.asarray(per_subject, dtype=np.float64)
    scored = ~np.isnan(table)
    counts = scored.sum(axis=0)
    sums = np.where(scored, table, 0.0).sum(axis=0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    out = {r: float(m) for r, m in zip(REGIONS, means, strict=True)}
    out["mean"] = float(np.mean(means[counts > 0]))
    return out


def tuned_regions(cases: list[Case]) -> tuple[str, ...]:
    """The regions that some validation case is scored on."""
    return tuple(r for r in REGIONS if any(r in case.regions for case in cases))


class GreedySearch:
    """Keeps the current settings, their Dice, and one row per setting tried."""

    def __init__(self, cases: list[Case], start: PostprocessSettings,
                 min_gain: float = 0.0, log_level: int = logging.INFO) -> None:
        self.cases = cases
        self.log_level = log_level
        self.min_gain = min_gain
        self.current = start
        self.best = score(cases, start)
        self.baseline = self.best
        self.rows: list[dict[str, Any]] = []
        self._record("baseline", "", self.best, chosen=True)

    def _record(self, option: str, value: Any, dice_: dict[str, float], chosen: bool) -> None:
        row = {"step": len(self.rows), "option": option, "value": value}
        row.update({f"dice_{k}": v for k, v in dice_.items()})
        row["gain"] = dice_["mean"] - self.best["mean"]
        self.rows.append({**row, "chosen": chosen})

    def step(self, option: str, candidates: list[tuple[Any, PostprocessSettings]]) -> None:
        """Score every candidate; keep the best (the first on ties) if it beats the current
        mean Dice by more than `min_gain`.

        Args:
            option: name of the option, for the report.
            candidates: (value shown in the report, settings) pairs.
        """
        if not candidates:
            log.log(self.log_level, "postprocess: %s not tried (off in params)", option)
            return
        first = len(self.rows)
        scores = [score(self.cases, settings) for _, settings in candidates]
        for (value, _), dice_ in zip(candidates, scores, strict=True):
            self._record(option, value, dice_, chosen=False)
        best = int(np.argmax([s["mean"] for s in scores]))  # argmax: first of equal values
        if scores[best]["mean"] > self.best["mean"] + self.min_gain:
            self.current, self.best = candidates[best][1], scores[best]
            self.rows[first + best]["chosen"] = True
        log.log(self.log_level, "postprocess: %s -> %s (val mean Dice %.4f)", option,
                 _current_value(option, self.current), self.best["mean"])

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=SEARCH_COLUMNS)


def _current_value(option: str, settings: PostprocessSettings) -> Any:
    if option.startswith("threshold_"):
        return settings.thresholds[option.removeprefix("threshold_")]
    if option.startswith("min_component_mm3_"):
        return settings.min_component_mm3[option.removeprefix("min_component_mm3_")]  # type: ignore[index]
    return settings.to_dict()[option]


def choose(cases: list[Case], cfg: dict[str, Any], base_threshold: float,
           log_level: int = logging.INFO) -> GreedySearch:
    """Run the greedy selection of the module docstring.

    Args:
        cases: the validation subjects (with TTA probabilities when `cfg["flip_tta"]`).
        cfg: the `postprocess` params.
        base_threshold: the threshold of the plain prediction (`evaluate.threshold`).
        log_level: of the line logged per step.
    """
    search = GreedySearch(cases, PostprocessSettings.uniform(base_threshold), cfg["min_gain"],
                          log_level)
    available = tuned_regions(cases)
    if len(available) < len(REGIONS):
        log.log(log_level, "postprocess: %s not available (not annotated, or not trained on): "
                "not tuned", ", ".join(r for r in REGIONS if r not in available))
    search.step("flip_tta", [(True, replace(search.current, flip_tta=True))]
                if cfg["flip_tta"] else [])
    for region in available:
        search.step(f"threshold_{region}", [
            (t, search.current.with_threshold(region, t)) for t in cfg["thresholds"]
            if t != search.current.thresholds[region]])
    for region in available:
        volume = cfg["min_component_mm3"][region]
        search.step(f"min_component_mm3_{region}", [
            (volume, search.current.with_min_component(region, volume))] if volume > 0 else [])
    volume = cfg["et_to_necrosis_mm3"]
    if "ET" in available:
        search.step("et_to_necrosis_mm3", [
            (volume, replace(search.current, et_to_necrosis_mm3=volume))] if volume > 0 else [])
    return search


def cross_validated(groups: list[list[Case]], cfg: dict[str, Any],
                    base_threshold: float) -> dict[str, float]:
    """Out-of-fold Dice of the whole procedure: for each fold, the settings chosen on the
    other folds' cases alone, applied to its own (nested in the cross-validation, so no
    subject is scored by settings chosen on it).

    Args:
        groups: the cases of each fold (at least two groups).
        cfg, base_threshold: as for `choose`.

    Returns:
        Mean Dice per region over every case, and "mean" over the regions.
    """
    per_subject = []
    for f, held in enumerate(groups):
        rest = [case for g, cases in enumerate(groups) if g != f for case in cases]
        settings = choose(rest, cfg, base_threshold, log_level=logging.DEBUG).current
        log.info("postprocess: without fold %d: %s", f, settings.to_dict())
        per_subject += [case_dice(case, settings) for case in held]
    return mean_dice(per_subject)


def cv_summary(search: GreedySearch, groups: list[list[Case]], cfg: dict[str, Any],
               base_threshold: float) -> dict[str, Any]:
    """What `postprocess_cv.json` holds: the out-of-fold Dice with the plain threshold, with
    the chosen settings (chosen on those same subjects: optimistic), and cross-validated
    (`cross_validated`); without folds, `folds: 0` and nulls."""
    if len(groups) < 2:
        return {"folds": 0, "plain": None, "chosen_on_same_subjects": None,
                "cross_validated": None}
    return {"folds": len(groups), "plain": _rounded(search.baseline),
            "chosen_on_same_subjects": _rounded(search.best),
            "cross_validated": _rounded(cross_validated(groups, cfg, base_threshold))}


def tuning_plan(model: torch.nn.Module, splits: Path) -> list[tuple[torch.nn.Module, list[str]]]:
    """(model, subjects) pairs whose predictions the settings are chosen on.

    Without folds: the model on the validation subjects. With cross-validation folds:
    each fold's own model on the fold's held-out subjects (out-of-fold predictions of
    every training subject, as nnU-Net chooses its post-processing), not the ensemble.
    """
    table = read_splits(splits)
    if n_folds(table) < 2:
        return [(model, subjects_in_split(splits, "val"))]
    return [(member, subjects) for _, member, subjects in fold_models(model, table, splits)]


def run_postprocess(*, params: dict[str, Any], model: Path, splits: Path, raw_dir: Path,
                    settings_out: Path, table_out: Path, cv_out: Path | None = None,
                    run_info: Path | None = None, tracking_uri: str = "",
                    device: str = "cpu") -> PostprocessSettings:
    """Predict the validation subjects, choose the settings, write and log them.

    Args:
        params: the validated params (sections postprocess, evaluate).
        model: the checkpoint written by `train`.
        splits: data/splits.csv (its val subjects are predicted).
        raw_dir: the raw NIfTI folder (data/raw).
        settings_out: JSON of the chosen settings (read by `evaluate` and `predict`).
        table_out: CSV of every setting tried.
        cv_out: JSON of `cv_summary` (with folds: the cross-validated Dice of the
            post-processing, chosen without the scored fold).
        run_info: the JSON written by `train`; results go to that MLflow run.
        tracking_uri: the MLflow tracking URI (used with `run_info`).
        device: torch device.
    """
    cfg, base_threshold = params["postprocess"], params["evaluate"]["threshold"]
    net, config = load_checkpoint(model, device)
    floor = min([base_threshold, *cfg["thresholds"]])
    plan = tuning_plan(net, splits)
    groups = [predict_cases(member, config, raw_dir, subjects, params["evaluate"]["batch_size"],
                            device, cfg["flip_tta"], floor) for member, subjects in plan]
    search = choose([case for cases in groups for case in cases], cfg, base_threshold)
    summary = cv_summary(search, groups, cfg, base_threshold)
    write_settings(settings_out, search.current)
    write_text(table_out, search.table().to_csv(index=False, lineterminator="\n",
                                                na_rep=NOT_AVAILABLE))
    log.info("postprocess: chosen %s; val Dice %s -> %s", search.current.to_dict(),
             _rounded(search.baseline), _rounded(search.best))
    outputs = [settings_out, table_out]
    if cv_out is not None:
        write_text(cv_out, json.dumps(summary, indent=2, allow_nan=False) + "\n")
        outputs.append(cv_out)
    if summary["folds"]:
        log.info("postprocess: cross-validated (chosen without the scored fold): %s",
                 summary["cross_validated"])
    if run_info is not None:
        log_to_run(tracking_uri, run_info, "postprocess", outputs, run_metrics(search, summary))
    return search.current


def _rounded(d: dict[str, float]) -> dict[str, float | None]:
    """Rounded to 4 decimals; NaN (a region not available) as None (JSON null)."""
    return {k: None if np.isnan(v) else round(v, 4) for k, v in d.items()}


def run_metrics(search: GreedySearch, summary: dict[str, Any] | None = None
                ) -> dict[str, float]:
    """The chosen settings and the validation Dice before and after, as MLflow metrics."""
    chosen = flatten(search.current.to_dict(), prefix="postprocess.chosen.")
    metrics = {k: float(v) for k, v in chosen.items()}
    metrics.update({f"postprocess_val_dice_{k}": v for k, v in search.best.items()
                    if not np.isnan(v)})
    metrics.update({f"postprocess_baseline_val_dice_{k}": v for k, v in search.baseline.items()
                    if not np.isnan(v)})
    if summary and summary["folds"]:
        metrics.update({f"postprocess_cv_dice_{k}": v
                        for k, v in summary["cross_validated"].items() if v is not None})
    return metrics


def configure_parser(parser: argparse.ArgumentParser) -> None:
    add_model_data_arguments(parser)
    parser.add_argument("--settings-out", required=True, type=Path,
                        help="JSON of the chosen settings (reports/postprocess.json)")
    parser.add_argument("--table-out", required=True, type=Path,
                        help="CSV of every setting tried (reports/postprocess.csv)")
    parser.add_argument("--cv-out", type=Path, default=None,
                        help="JSON of the out-of-fold Dice with the plain threshold, with the "
                        "chosen settings, and with settings chosen without the scored fold "
                        "(reports/postprocess_cv.json; nulls without folds)")
    parser.add_argument("--run-info", type=Path, default=None,
                        help="JSON written by train; results are logged to that MLflow run")
    add_runtime_arguments(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from brainseg.tracking import tracking_uri

    set_threads(args.threads)
    run_postprocess(params=params, model=args.model, splits=args.splits, raw_dir=args.raw_dir,
                    settings_out=args.settings_out, table_out=args.table_out,
                    cv_out=args.cv_out, run_info=args.run_info,
                    tracking_uri=tracking_uri(args.tracking_uri),
                    device=resolve_device(args.device))
