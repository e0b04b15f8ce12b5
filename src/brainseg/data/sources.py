"""Where the raw cohort comes from: a synthetic generator, a local folder, or an archive URL.

A `url` source is fetched into `<source-dir>/archive/` (resumable, checksum-verified,
cached) and unpacked into `<source-dir>/extracted/`; from there on it is a local
folder in one of the supported layouts (BraTS 2020/2021, BraTS 2023, Decathlon, Kaggle LGG).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from brainseg.errors import BrainsegError
from brainseg.io.listing import subject_folders, visible

log = logging.getLogger(__name__)
#: Where a `url` source is downloaded and unpacked, unless `--source-dir` says otherwise.
DEFAULT_SOURCE_DIR = Path("data/source")


def extracted_dir(source_dir: Path) -> Path:
    """Where a downloaded archive is unpacked."""
    return Path(source_dir) / "extracted"


def fetch_source(cfg: dict[str, Any], source_dir: Path) -> Path:
    """Download (or reuse) and unpack the archive of a `url` source; returns the unpacked dir.

    The unpacked folder carries a marker with the archive's name and checksum, so a
    changed URL or checksum unpacks again and an unchanged one does nothing.
    """
    from brainseg.io.archives import extract_archive
    from brainseg.io.fetch import fetch

    if not cfg.get("url"):
        raise BrainsegError("download.url: required when download.source is 'url'")
    archive = fetch(cfg["url"], Path(source_dir) / "archive", cfg.get("sha256"), md5=cfg.get("md5"))
    dest = extracted_dir(source_dir)
    stamp = f"{archive.name} {cfg.get('sha256') or ''} {cfg.get('md5') or ''}\n"
    marker = dest / ".brainseg-source"
    if not (marker.is_file() and marker.read_text() == stamp):
        extract_archive(archive, dest)
        marker.write_text(stamp)
    return dest


def dataset_root(cfg: dict[str, Any], source_dir: Path) -> Path:
    """The folder holding the dataset of a `local` or (already fetched) `url` source.

    For an archive, the dataset may sit one folder down (`Task01_BrainTumour/...`).
    """
    if cfg["source"] == "local":
        if not cfg.get("path"):
            raise BrainsegError("download.path: required when download.source is 'local'")
        root = Path(cfg["path"])
        if not root.is_dir():
            raise BrainsegError(f"download.path: folder not found: {root}")
        return root
    top = extracted_dir(source_dir)
    if not top.is_dir():
        raise BrainsegError(f"{top}: not fetched yet (run `brainseg download --fetch-only`)")
    children = subject_folders(top)
    files = [p for p in top.iterdir() if p.is_file() and visible(p)]
    return children[0] if len(children) == 1 and not files and _looks_nested(children[0]) else top


def _looks_nested(folder: Path) -> bool:
    """True when `folder` is itself a dataset root (Decathlon) or holds subject folders."""
    return (folder / "imagesTr").is_dir() or any(p.is_dir() for p in folder.iterdir())


def layout_of(cfg: dict[str, Any], root: Path) -> str:
    """The configured layout, or the detected one when `download.layout` is `auto`."""
    from brainseg.data.layouts import detect_layout

    return detect_layout(root) if cfg.get("layout", "auto") == "auto" else cfg["layout"]


def dataset_ids(cfg: dict[str, Any], source_dir: Path) -> list[str]:
    """Ids of the labelled subjects of a local or fetched dataset (the training cohort).

    Subjects without a label map (Decathlon `imagesTs`, a BraTS folder without `seg`) are
    refused for training with a warning that names every one of them: they can be
    segmented with `brainseg predict`, not trained or evaluated on.
    """
    from brainseg.data.layouts import dataset_subjects, labelled_subjects

    root = dataset_root(cfg, source_dir)
    layout = layout_of(cfg, root)
    every = dataset_subjects(root, layout)
    labelled = labelled_subjects(root, layout)
    unlabelled = sorted(set(every) - set(labelled))
    if unlabelled:
        log.warning("%s: %d subjects without a label map left out of the training cohort "
                    "(segment them with `brainseg predict`): %s", root, len(unlabelled),
                    ", ".join(unlabelled))
    if not labelled:
        raise BrainsegError(f"{root}: no subject with a label map ({layout} layout): nothing "
                            "to train on (segment unlabelled subjects with `brainseg predict`)")
    return labelled
