"""Stage `download`: write the raw cohort in BraTS 2020 layout, plus data/raw/manifest.csv.

`source: synthetic` generates subjects from the MNI152 template (deterministic per seed
and subject); `source: local` validates and copies an existing BraTS 2020 folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.manifest import write_manifest
from brainseg.data.subjects import subject_ids, synthetic_index
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir
from brainseg.io.nifti import BRATS_KEYS, copy_as_gzip, load_subject, save_nifti
from brainseg.parallel import map_subjects
from brainseg.params import load_params

log = logging.getLogger(__name__)


def generate_synthetic(subject: str, out_dir: Path, seed: int, cfg: dict[str, Any]) -> str:
    """Generate one synthetic subject into `<out_dir>/<subject>/` (atomically)."""
    from brainseg.data.synthetic import SyntheticConfig, generate_subject

    config = SyntheticConfig(**{**cfg, "tumor_radius_mm": tuple(cfg["tumor_radius_mm"])})
    volumes = generate_subject(seed, synthetic_index(subject), config)
    with atomic_dir(out_dir / subject) as tmp:
        for key in BRATS_KEYS:
            data = volumes[key]
            dtype = np.uint8 if key == "seg" else np.int16
            save_nifti(tmp / f"{subject}_{key}.nii.gz", data.astype(dtype), volumes["affine"])
    return subject


def ingest_local(subject: str, out_dir: Path, root: Path) -> str:
    """Validate one BraTS 2020 subject folder and copy it as `.nii.gz` (atomically)."""
    loaded = load_subject(root / subject)
    with atomic_dir(out_dir / subject) as tmp:
        for key, src in loaded.files.items():
            copy_as_gzip(src, tmp / f"{subject}_{key}.nii.gz")
    return subject


def run_download(
    params: dict[str, Any],
    out_dir: str | Path,
    subjects: list[str] | None = None,
    manifest: bool = True,
    jobs: int = 0,
) -> list[str]:
    """Write subjects (all, or the given ones) and, if `manifest`, the manifest of all.

    Args:
        params: validated params (sections `base` and `download` are used).
        out_dir: the raw folder, e.g. data/raw.
        subjects: ids to (re)write; None for all; [] to write only the manifest.
        manifest: write `<out_dir>/manifest.csv` describing every subject.
        jobs: processes for the subjects (0: all cores).

    Returns:
        The ids written.
    """
    cfg, out_dir = params["download"], Path(out_dir)
    every = subject_ids(cfg)
    todo = every if subjects is None else subjects
    unknown = sorted(set(todo) - set(every))
    if unknown:
        raise BrainsegError(f"--subject: unknown ids {unknown} for these params")
    if cfg["source"] == "synthetic":
        args: tuple = (out_dir, params["base"]["seed"], cfg["synthetic"])
        fn = generate_synthetic
    else:
        args, fn = (out_dir, Path(cfg["path"])), ingest_local
    if todo:
        map_subjects(fn, todo, jobs, f"download ({cfg['source']})", *args)
    if manifest:
        write_manifest(out_dir, every, cfg["source"])
        log.info("wrote %s (%d subjects)", out_dir / "manifest.csv", len(every))
    return list(todo)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params.yaml to read (validated)")
    parser.add_argument("--out-dir", required=True, type=Path, help="raw folder, e.g. data/raw")
    parser.add_argument(
        "--subject",
        action="append",
        help="write only this subject (repeatable); the manifest is then skipped unless "
        "--manifest is given. Snakemake runs one job per subject this way.",
    )
    parser.add_argument(
        "--manifest-only",
        action="store_true",
        help="write only <out-dir>/manifest.csv for subjects already on disk",
    )
    parser.add_argument(
        "--manifest", action="store_true", help="with --subject, also write the manifest"
    )
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: all cores)")


def main(args: argparse.Namespace) -> None:
    params = load_params(args.params)
    if args.manifest_only:
        subjects: list[str] | None = []
    else:
        subjects = args.subject
    manifest = args.manifest_only or args.manifest or args.subject is None
    run_download(params, args.out_dir, subjects, manifest=manifest, jobs=args.jobs)
