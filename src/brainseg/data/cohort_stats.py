"""Command `cohort-stats`: the statistics that say how alike two cohorts are, and a
summary of a real cohort to compare the synthetic one with.

Per subject, after the pipeline's own preprocessing (`extract_slices`, then
`normalize_slices`: the slices training sees): per modality and tissue (normal-appearing
brain, edema = 2, necrosis / non-enhancing core = 1, enhancing = 4) the intensity
quantiles, mean and std; per modality the texture of normal brain (local variance,
gradient magnitude, slope of the radial power spectrum); and the tumour's shape on the
subject's own grid (`brainseg.data.shape_stats`). Each statistic has a flat name:
`intensity.<modality>.<tissue>.<q50|...>`, `texture.<modality>.<local_var|...>`,
`shape.<wt_cm3|...>`.

`brainseg cohort-stats --fit <folder> --out <json>` summarizes the subjects of a real
folder (mean, std and quantiles over subjects, with the provenance of the fit); the
scans are read, never copied.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from brainseg import __version__
from brainseg.data.loading import Subject, load_subject
from brainseg.data.preprocess import brain_mask, extract_slices, normalize_slices
from brainseg.data.shape_stats import shape_summary
from brainseg.data.tissue_stats import intensity_summary, texture_summary
from brainseg.errors import BrainsegError
from brainseg.io.atomic import write_text
from brainseg.io.hashing import file_digests
from brainseg.io.listing import subject_folders

log = logging.getLogger(__name__)
#: Tissue classes and the label they are (normal-appearing brain: label 0 in the brain).
TISSUES = {"brain": 0, "necrosis": 1, "edema": 2, "enhancing": 4}
#: Summary of one statistic over subjects: quantiles (in %) beside mean and std.
OVER_SUBJECTS = (5, 25, 50, 75, 95)
FORMAT = 1


def _normalized_native(subject: Subject, params: dict[str, Any], names: tuple[str, ...]
                       ) -> dict[str, np.ndarray]:
    """The modalities `names` z-scored on the subject's own grid by `normalize_slices`
    (each (x, y, z), float32); a modality the subject lacks is absent."""
    brain = brain_mask(subject.image)
    index = [subject.modalities.index(m) for m in names if m in subject.modalities]
    if not index:
        return {}
    volume = np.stack([subject.image[i] for i in index])  # (m, x, y, z)
    normed, _ = normalize_slices(volume.transpose(3, 0, 1, 2), brain.transpose(2, 0, 1),
                                 tuple(params["normalize"]["clip_percentiles"]))
    return {subject.modalities[i]: normed[:, k].transpose(1, 2, 0).astype(np.float32)
            for k, i in enumerate(index)}


def subject_stats(subject: Subject, params: dict[str, Any]) -> dict[str, float]:
    """Every statistic of one subject, by flat name (NaN: not defined for it).

    Args:
        subject: a loaded subject with its label map.
        params: the validated params (sections extract, normalize).
    """
    if subject.seg is None:
        raise BrainsegError(f"{subject.subject}: no label map; statistics need one")
    ext = params["extract"]
    slices, labels, brain, _ = extract_slices(subject.image, subject.seg, ext["image_size"],
                                              ext["margin"], ext["min_brain_pixels"])
    normed, _ = normalize_slices(slices, brain, tuple(params["normalize"]["clip_percentiles"]))
    annotated = "TC" in subject.regions  # a whole-tumour-only map has no sub-regions
    out: dict[str, float] = {}
    for c, modality in enumerate(subject.modalities):
        image = normed[:, c]
        for tissue, label in TISSUES.items():
            mask = brain & (labels == label) if (annotated or label == 0) else \
                np.zeros_like(brain)
            for key, v in intensity_summary(image[mask]).items():
                out[f"intensity.{modality}.{tissue}.{key}"] = v
        for key, v in texture_summary(image, brain & (labels == 0), brain).items():
            out[f"texture.{modality}.{key}"] = v
    native = _normalized_native(subject, params, ("t1", "t2"))
    if {"t1", "t2"} <= native.keys():
        shape = shape_summary(subject.seg, brain_mask(subject.image), native["t1"],
                              native["t2"], subject.spacing)
        out.update({f"shape.{k}": v for k, v in shape.items()})
    return out


def summarize(rows: list[dict[str, float]]) -> dict[str, dict[str, float | int | None]]:
    """Per statistic, over the subjects (NaN values left out): n, mean, std (ddof 1) and
    the quantiles `OVER_SUBJECTS`; a statistic no subject defines has n 0 and nulls.
    Statistics in sorted order."""
    names = sorted({k for row in rows for k in row})
    out: dict[str, dict[str, float | int | None]] = {}
    for name in names:
        x = np.array([row.get(name, np.nan) for row in rows], dtype=np.float64)
        x = x[np.isfinite(x)]
        entry: dict[str, float | int | None] = {"n": len(x)}
        entry["mean"] = round(float(x.mean()), 6) if len(x) else None
        entry["std"] = round(float(x.std(ddof=1)), 6) if len(x) > 1 else None
        for q in OVER_SUBJECTS:
            entry[f"q{q:02d}"] = round(float(np.percentile(x, q)), 6) if len(x) else None
        out[name] = entry
    return out


def cohort_stats(folders: list[Path], params: dict[str, Any]) -> list[dict[str, float]]:
    """`subject_stats` of the subject in each folder (loaded one at a time), in order."""
    rows = []
    for folder in folders:
        rows.append(subject_stats(load_subject(folder), params))
        log.info("statistics of %s: %d", folder.name, len(rows[-1]))
    return rows


def select(folders: list[Path], spec: str | None) -> list[Path]:
    """The folders picked by `spec`: 1-based inclusive ranges of the sorted list, comma
    separated ("1-10", "1-5,8"); None: all of them."""
    if spec is None:
        return folders
    picked: list[int] = []
    try:
        for part in spec.split(","):
            lo, _, hi = part.partition("-")
            picked.extend(range(int(lo), int(hi or lo) + 1))
    except ValueError:
        bad = f"--subjects {spec!r}: expected ranges such as 1-10 or 1-5,8"
        raise BrainsegError(bad) from None
    if not picked or min(picked) < 1 or max(picked) > len(folders):
        raise BrainsegError(f"--subjects {spec!r}: outside 1-{len(folders)} "
                            f"({len(folders)} subjects)")
    return [folders[i - 1] for i in sorted(set(picked))]


def _code_version() -> str:
    """brainseg's version, and the git commit of its source tree where it is one."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"],
                                cwd=Path(__file__).parent, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__} (git {commit})"


def provenance(source: Path, used: list[Path], held_out: list[Path], spec: str | None,
               params: dict[str, Any]) -> dict[str, Any]:
    """Where a fit comes from: the folder's name, the subjects used and held out, the
    SHA-256 of the folder's MANIFEST.tsv and of every file read, date, code version and
    the preprocessing params the statistics depend on."""
    files = sorted(f for folder in used for f in folder.iterdir() if f.name.endswith(".nii.gz"))
    listing = "".join(f"{f.parent.name}/{f.name} {file_digests(f, 'sha256')[0]}\n"
                      for f in files)
    manifest = source / "MANIFEST.tsv"
    return {
        "source": source.name, "subjects": [f.name for f in used],
        "selection": spec or "all",
        "held_out": [f.name for f in held_out],
        "held_out_note": "not fitted on: kept for reporting transfer to real scans",
        "manifest_sha256": file_digests(manifest, "sha256")[0] if manifest.is_file() else None,
        "inputs_sha256": hashlib.sha256(listing.encode()).hexdigest(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d"),
        "code_version": _code_version(),
        "preprocessing": {"extract": dict(params["extract"]),
                          "normalize": dict(params["normalize"])},
    }


def run_cohort_stats(*, params: dict[str, Any], fit: Path, out: Path,
                     subjects: str | None = None) -> dict[str, Any]:
    """Fit the summary of a real cohort and write it (atomically) as JSON.

    Args:
        params: the validated params (sections extract, normalize).
        fit: a folder of subject folders in BraTS 2020 layout, with labels.
        out: the JSON summary: {"format", "provenance", "n_subjects", "stats"}.
        subjects: `select`'s ranges of the sorted subject folders; None: all.

    Raises:
        BrainsegError: the folder, a subject or the selection is unusable (nothing written).
    """
    fit = Path(fit)
    folders = subject_folders(fit)
    if not folders:
        raise BrainsegError(f"{fit}: no subject folder found")
    used = select(folders, subjects)
    held_out = [f for f in folders if f not in used]
    rows = cohort_stats(used, params)
    summary = {"format": FORMAT,
               "provenance": provenance(fit, used, held_out, subjects, params),
               "n_subjects": len(rows), "stats": summarize(rows)}
    write_text(out, json.dumps(summary, indent=1) + "\n")
    log.info("%s: %d statistics of %d subjects of %s", out, len(summary["stats"]),
             len(rows), fit)
    return summary


def read_summary(path: Path) -> dict[str, Any]:
    """A summary written by `run_cohort_stats`, checked; one message naming the file."""
    try:
        summary = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"{path}: cannot read the real-cohort summary ({exc})") from None
    if not isinstance(summary, dict) or summary.get("format") != FORMAT \
            or not isinstance(summary.get("stats"), dict):
        raise BrainsegError(f"{path}: not a real-cohort summary of format {FORMAT} "
                            "(rewrite it with `brainseg cohort-stats --fit`)")
    return summary


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fit", required=True, type=Path,
                        help="real cohort: a folder of BraTS 2020 subject folders with labels "
                        "(../shared/fixtures/brats18)")
    parser.add_argument("--subjects", default=None,
                        help="1-based ranges of the sorted subjects to fit on (1-10, 1-5,8); "
                        "the rest are recorded as held out (default: all)")
    parser.add_argument("--out", required=True, type=Path, help="the JSON summary to write")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_cohort_stats(params=params, fit=args.fit, out=args.out, subjects=args.subjects)
