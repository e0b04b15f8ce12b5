"""Stage `extract`: validate each raw subject, crop to the brain and resize its axial slices.

Writes `<out-dir>/<subject>/{image.npy, label.npy, brain.npy, geometry.json}`:
image float32 (s, m, h, w) raw intensities of the subject's m modalities, label uint8
(s, h, w) BraTS labels, brain bool (s, h, w), and the geometry that maps slices back to
the original grid, with the subject's `modalities` and `regions` (see `load_subject`).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.loading import load_subject
from brainseg.data.manifest import read_manifest
from brainseg.data.preprocess import extract_slices
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir
from brainseg.parallel import map_subjects

log = logging.getLogger(__name__)


def extract_subject(subject: str, raw_dir: Path, out_dir: Path, cfg: dict[str, Any]) -> int:
    """Extract one subject; returns the number of slices kept."""
    loaded = load_subject(raw_dir / subject, native=True)  # volumes as stored: no float32 copy
    try:
        slices, labels, brain, geo = extract_slices(
            loaded.image, loaded.seg, cfg["image_size"], cfg["margin"], cfg["min_brain_pixels"]
        )
    except BrainsegError as exc:
        raise BrainsegError(f"{raw_dir / subject}: {exc}") from exc
    with atomic_dir(out_dir / subject) as tmp:
        np.save(tmp / "image.npy", slices)
        np.save(tmp / "label.npy", labels)
        np.save(tmp / "brain.npy", brain)
        geometry = {**geo.to_dict(), "modalities": list(loaded.modalities),
                    "regions": list(loaded.regions)}
        (tmp / "geometry.json").write_text(json.dumps(geometry, indent=1) + "\n")
    return len(geo.z)


def run_extract(
    *,
    params: dict[str, Any],
    raw_dir: str | Path,
    out_dir: str | Path,
    subjects: list[str] | None = None,
    jobs: int = 0,
) -> None:
    """Extract the given subjects (default: every subject of `<raw_dir>/manifest.csv`)."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if subjects is None:
        subjects = read_manifest(raw_dir / "manifest.csv")["subject"].tolist()
    counts = map_subjects(extract_subject, subjects, jobs, "extract", raw_dir, out_dir,
                          params["extract"])
    log.info("extracted %d slices from %d subjects", sum(counts), len(subjects))


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--raw-dir", required=True, type=Path, help="raw folder (data/raw)")
    parser.add_argument("--out-dir", required=True, type=Path, help="output (data/extracted)")
    parser.add_argument(
        "--subject",
        action="append",
        dest="subjects",
        help="extract only this subject (repeatable); default: all subjects of the manifest",
    )
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: all cores)")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_extract(params=params, raw_dir=args.raw_dir, out_dir=args.out_dir,
                subjects=args.subjects, jobs=args.jobs)
