"""Stage `normalize`: z-score each subject's slices per modality inside the brain.

Reads `<in-dir>/<subject>/` from `extract` and writes the training store
`<out-dir>/<subject>/{image.npy, label.npy, meta.json}`: image float16 (s, m, h, w),
memory-mappable for fast random access; label uint8 (s, h, w); meta with the subject's
`modalities` (the m channels, in order) and `regions` (those its labels annotate), the
geometry and the normalization statistics.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.labels import REGIONS
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import normalize_slices
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir
from brainseg.io.listing import subject_folders
from brainseg.parallel import map_subjects

log = logging.getLogger(__name__)


def normalize_subject(subject: str, in_dir: Path, out_dir: Path, cfg: dict[str, Any]) -> None:
    """Normalize one extracted subject."""
    src = in_dir / subject
    try:
        slices = np.load(src / "image.npy")
        labels = np.load(src / "label.npy")
        brain = np.load(src / "brain.npy")
        geometry = json.loads((src / "geometry.json").read_text())
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"{src}: cannot read extracted slices: {exc}") from exc
    image, stats = normalize_slices(slices, brain, tuple(cfg["clip_percentiles"]))
    modalities = geometry.pop("modalities", list(MODALITIES))
    regions = geometry.pop("regions", list(REGIONS))
    meta = {"subject": subject, "modalities": modalities, "regions": regions,
            "geometry": geometry, "normalization": stats}
    with atomic_dir(out_dir / subject) as tmp:
        np.save(tmp / "image.npy", image)
        np.save(tmp / "label.npy", labels)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def run_normalize(
    *,
    params: dict[str, Any],
    in_dir: str | Path,
    out_dir: str | Path,
    subjects: list[str] | None = None,
    jobs: int = 0,
) -> None:
    """Normalize the given subjects (default: every subject folder in `in_dir`)."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if subjects is None:
        subjects = [folder.name for folder in subject_folders(in_dir)]
    map_subjects(normalize_subject, subjects, jobs, "normalize", in_dir, out_dir,
                 params["normalize"])
    log.info("normalized %d subjects into %s", len(subjects), out_dir)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--in-dir", required=True, type=Path, help="extract output")
    parser.add_argument("--out-dir", required=True, type=Path, help="training store (data/slices)")
    parser.add_argument(
        "--subject", action="append", dest="subjects",
        help="only this subject (repeatable); default: all"
    )
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: all cores)")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_normalize(params=params, in_dir=args.in_dir, out_dir=args.out_dir,
                  subjects=args.subjects, jobs=args.jobs)
