"""The finished run that `brainseg view` shows: its scored subjects and their files.

A run is what `evaluate` leaves behind: `reports/per_subject.csv` (one row per scored
subject, with its Dice), `data/predictions/<subject>_seg.nii.gz` and the raw scans
`data/raw/<subject>/<subject>_{t1,t1ce,t2,flair,seg}.nii.gz`. The listing is read once,
at start-up; the web server looks subjects up in it by id and never builds a file name
from what a client sends.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.nifti import find_nifti

log = logging.getLogger(__name__)

#: A subject id the viewer accepts: letters, digits, `.`, `_`, `-`, not starting with `.`.
SUBJECT_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}")
#: The label maps of a subject, next to its `MODALITIES`.
LABEL_VOLUMES: tuple[str, ...] = ("reference", "prediction")
DICE_KEYS: tuple[str, ...] = (*REGIONS, "mean")


@dataclass(frozen=True)
class Subject:
    """One scored subject of the run.

    Attributes:
        id: the subject id (per_subject.csv's `subject`).
        dice: Dice of WT, TC, ET and their mean; None where not available.
        fold: the cross-validation fold that scored it (-1: the test set), None without folds.
        files: the NIfTI of each of `MODALITIES` and `LABEL_VOLUMES` found on disk.
    """

    id: str
    dice: dict[str, float | None]
    fold: int | None
    files: dict[str, Path]


@dataclass(frozen=True)
class RunPaths:
    """Where a run keeps what the viewer reads (see `run_paths`)."""

    per_subject: Path
    predictions: Path
    raw: Path
    model: Path | None = None
    postprocess: Path | None = None


def run_paths(root: Path | None, *, per_subject: Path | None = None,
              predictions: Path | None = None, raw: Path | None = None,
              postprocess: Path | None = None) -> RunPaths:
    """The paths of a run: those given, else the pipeline's under `root` (a repository).

    Under `root`: reports/per_subject.csv, data/predictions, data/raw, models/model.pt and
    reports/postprocess.json (the last two only where they exist).

    Raises:
        BrainsegError: neither `root` nor the three data paths are given.
    """
    if root is None and None in (per_subject, predictions, raw):
        raise BrainsegError("give --run (a repository after `evaluate`), or all of --reports, "
                            "--predictions and --raw")
    model = None
    if root is not None:
        per_subject = per_subject or root / "reports" / "per_subject.csv"
        predictions = predictions or root / "data" / "predictions"
        raw = raw or root / "data" / "raw"
        if (root / "models" / "model.pt").is_file():
            model = root / "models" / "model.pt"
        if postprocess is None and (root / "reports" / "postprocess.json").is_file():
            postprocess = root / "reports" / "postprocess.json"
    assert per_subject is not None and predictions is not None and raw is not None
    return RunPaths(per_subject, predictions, raw, model, postprocess)


def _score(value: object) -> float | None:
    if value is None or value == NOT_AVAILABLE:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) else number


def subject_files(subject: str, predictions: Path, raw: Path) -> dict[str, Path]:
    """The files of `subject` that exist: each modality, its reference and its prediction."""
    folder = raw / subject
    candidates = {m: find_nifti(folder, f"{subject}_{m}") for m in MODALITIES}
    candidates["reference"] = find_nifti(folder, f"{subject}_seg")
    candidates["prediction"] = (find_nifti(predictions, f"{subject}_seg")
                                or find_nifti(predictions, subject))
    return {name: path for name, path in candidates.items() if path is not None}


def read_run(paths: RunPaths) -> dict[str, Subject]:
    """The run's subjects, keyed by id, in the order of per_subject.csv.

    A row whose id is not a plain name (`SUBJECT_ID`), or whose prediction or scans are
    missing, is left out with a warning naming it.

    Raises:
        BrainsegError: per_subject.csv is missing or lacks its columns, or no subject has
            its files.
    """
    if not paths.per_subject.is_file():
        raise BrainsegError(f"{paths.per_subject}: per-subject table not found (run "
                            "`brainseg evaluate` first, or give --reports)")
    table = pd.read_csv(paths.per_subject, dtype={"subject": str}, keep_default_na=False)
    missing = [c for c in ("subject", *(f"dice_{k}" for k in DICE_KEYS)) if c not in table]
    if missing:
        raise BrainsegError(f"{paths.per_subject}: missing columns {missing}")
    subjects: dict[str, Subject] = {}
    for row in table.to_dict("records"):
        sid = str(row["subject"])
        if not SUBJECT_ID.fullmatch(sid):
            log.warning("%s: subject id %r left out (not a plain name)", paths.per_subject, sid)
            continue
        files = subject_files(sid, paths.predictions, paths.raw)
        lacking = [v for v in (*MODALITIES, "prediction") if v not in files]
        if lacking:
            log.warning("%s: left out, no %s under %s or %s", sid, ", ".join(lacking),
                        paths.raw, paths.predictions)
            continue
        fold = int(row["fold"]) if "fold" in row and row["fold"] != "" else None
        dice = {k: _score(row[f"dice_{k}"]) for k in DICE_KEYS}
        subjects[sid] = Subject(sid, dice, fold, files)
    if not subjects:
        raise BrainsegError(f"{paths.per_subject}: no subject has its scans under {paths.raw} "
                            f"and its prediction under {paths.predictions}")
    log.info("%d subjects from %s", len(subjects), paths.per_subject)
    return subjects
