"""Stage `download`: write the raw cohort in BraTS 2020 layout, plus data/raw/manifest.csv.

`source: synthetic` generates subjects from the MNI152 template (deterministic per seed
and subject); `source: local` validates and converts a folder in any supported layout
(BraTS 2020/2021, BraTS 2023, Decathlon Task01, Kaggle LGG); `source: url` fetches and unpacks an
archive first, then ingests it like a local folder; `source: manifest` fetches the files
of a committed list one by one (size and SHA-256 checked), then ingests each subject
like a local BraTS 2020 folder.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.labels import mark_header
from brainseg.data.manifest import write_manifest
from brainseg.data.modalities import BRATS_KEYS
from brainseg.data.sources import DEFAULT_SOURCE_DIR, dataset_root, fetch_source, layout_of
from brainseg.data.subjects import subject_ids, synthetic_index
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir
from brainseg.io.nifti import copy_as_gzip, save_nifti
from brainseg.parallel import map_subjects

log = logging.getLogger(__name__)


def generate_synthetic(subject: str, out_dir: Path, seed: int, cfg: dict[str, Any]) -> str:
    """Generate one synthetic subject into `<out_dir>/<subject>/` (atomically)."""
    from brainseg.data.synthetic import SyntheticConfig, generate_subject

    config = SyntheticConfig(**cfg)
    volumes = generate_subject(seed, synthetic_index(subject), config)
    with atomic_dir(out_dir / subject) as tmp:
        for key in BRATS_KEYS:
            data = volumes[key]
            dtype = np.uint8 if key == "seg" else np.int16
            save_nifti(tmp / f"{subject}_{key}.nii.gz", data.astype(dtype), volumes["affine"])
    return subject


def ingest_local(subject: str, out_dir: Path, root: Path, layout: str) -> str:
    """Validate one subject of a dataset and write it in the internal layout (atomically).

    BraTS 2020 files are copied byte for byte (gzipped if they were `.nii`); other
    layouts are converted: modalities renamed (or split out of a 4D Decathlon image or
    the LGG TIFF slices, keeping their on-disk dtype) and labels mapped to BraTS 2020
    values. Only the modalities the source has are written; a label map of fewer
    modalities or regions records them in its header (`brainseg.data.labels.mark_header`).
    """
    from brainseg.data.loading import load_source_subject

    src = load_source_subject(root, layout, subject, native=layout != "decathlon", confine=True)
    if src.seg is None:
        raise BrainsegError(f"{root / subject}: no label map: subject {subject} cannot be used "
                            "for training (segment it with `brainseg predict`)")
    with atomic_dir(out_dir / subject) as tmp:
        for i, key in enumerate(src.modalities):
            target = tmp / f"{subject}_{key}.nii.gz"
            if layout == "brats2020":
                copy_as_gzip(src.files[key], target)
            else:
                save_nifti(target, src.image[i].astype(src.dtype), src.affine, src.header)
        if layout == "brats2020":
            copy_as_gzip(src.files["seg"], tmp / f"{subject}_seg.nii.gz")
        else:
            save_nifti(tmp / f"{subject}_seg.nii.gz", src.seg, src.affine,
                       mark_header(src.header, src.modalities, src.regions))
    return subject


def download_listed(subject: str, out_dir: Path, cfg: dict[str, Any], source_dir: Path) -> str:
    """Fetch one subject of a `manifest` source, then ingest it as a BraTS 2020 folder."""
    from brainseg.data.manifest_source import fetch_listed

    return ingest_local(subject, out_dir, fetch_listed(cfg, subject, source_dir), "brats2020")


def run_download(
    *,
    params: dict[str, Any],
    out_dir: str | Path,
    subjects: list[str] | None = None,
    manifest: bool = True,
    jobs: int = 0,
    source_dir: str | Path = DEFAULT_SOURCE_DIR,
) -> list[str]:
    """Write subjects (all, or the given ones) and, if `manifest`, the manifest of all.

    Args:
        params: validated params (sections `base` and `download` are used).
        out_dir: the raw folder, e.g. data/raw.
        subjects: ids to (re)write (`--subject`); None for all; [] to write only the manifest.
        manifest: write `<out_dir>/manifest.csv` describing every subject.
        jobs: processes for the subjects (0: all cores).
        source_dir: where a `url` source is downloaded and unpacked, and the files of a
            `manifest` source are fetched.

    Returns:
        The ids written.
    """
    cfg, out_dir = params["download"], Path(out_dir)
    if cfg["source"] == "url" and subjects is None:  # per-subject jobs reuse the unpacked copy
        fetch_source(cfg, Path(source_dir))
    every = subject_ids(cfg, source_dir)
    todo = every if subjects is None else subjects
    unknown = sorted(set(todo) - set(every))
    if unknown:
        why = "" if cfg["source"] in ("synthetic", "manifest") else (
            " (subjects without a label map are not part of the training cohort)")
        raise BrainsegError(f"--subject: unknown ids {unknown} for these params{why}")
    if cfg["source"] == "synthetic":
        args: tuple = (out_dir, params["base"]["seed"], cfg["synthetic"])
        fn = generate_synthetic
    elif cfg["source"] == "manifest":
        args, fn = (out_dir, cfg, Path(source_dir)), download_listed
    else:
        root = dataset_root(cfg, Path(source_dir))
        args, fn = (out_dir, root, layout_of(cfg, root)), ingest_local
    if todo:
        map_subjects(fn, todo, jobs, f"download ({cfg['source']})", *args)
    if manifest:
        write_manifest(out_dir, every, cfg["source"], jobs)
        log.info("wrote %s (%d subjects)", out_dir / "manifest.csv", len(every))
    return list(todo)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", required=True, type=Path, help="raw folder, e.g. data/raw")
    parser.add_argument(
        "--subject",
        action="append",
        dest="subjects",
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
    parser.add_argument(
        "--fetch-only",
        action="store_true",
        help="source: url only: download, verify and unpack the archive into --source-dir, "
        "then stop (Snakemake's `fetch` checkpoint)",
    )
    parser.add_argument(
        "--source-dir",
        type=Path,
        default=DEFAULT_SOURCE_DIR,
        help="where a url source is cached (archive/) and unpacked (extracted/), and the "
        f"files of a manifest source are fetched (manifest/); default {DEFAULT_SOURCE_DIR}",
    )
    parser.add_argument("--jobs", type=int, default=0, help="processes (0: all cores)")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    if args.fetch_only:
        if params["download"]["source"] != "url":
            raise BrainsegError("--fetch-only: download.source is not 'url'")
        fetch_source(params["download"], args.source_dir)
        return
    subjects: list[str] | None = [] if args.manifest_only else args.subjects
    manifest = args.manifest_only or args.manifest or args.subjects is None
    run_download(params=params, out_dir=args.out_dir, subjects=subjects, manifest=manifest,
                 jobs=args.jobs, source_dir=args.source_dir)
