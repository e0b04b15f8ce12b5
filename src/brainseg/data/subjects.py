"""Subject ids and their raw files, derived from params alone (cheap: the Snakefile calls
these at parse time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brainseg.data.modalities import MODALITIES
from brainseg.data.sources import DEFAULT_SOURCE_DIR, dataset_ids, dataset_root, layout_of
from brainseg.errors import BrainsegError


def synthetic_ids(prefix: str, n_subjects: int) -> list[str]:
    """Ids of the synthetic cohort: `<prefix>-000`, `<prefix>-001`, ..."""
    return [f"{prefix}-{i:03d}" for i in range(n_subjects)]


def synthetic_index(subject: str) -> int:
    """The generator index encoded in a synthetic id (`BraTS-SYN-007` → 7)."""
    try:
        return int(subject.rsplit("-", 1)[1])
    except (IndexError, ValueError) as exc:
        raise BrainsegError(f"'{subject}' is not a synthetic subject id (<prefix>-NNN)") from exc


def subject_ids(download: dict[str, Any],
                source_dir: str | Path = DEFAULT_SOURCE_DIR) -> list[str]:
    """All subject ids for the `download` params section.

    Synthetic ids need nothing on disk; a `manifest` source lists them in its file
    (`download.manifest`); a local folder is listed; a `url` source must have been
    fetched into `source_dir` first (`brainseg download --fetch-only`).
    """
    if download["source"] == "synthetic":
        return synthetic_ids(download["prefix"], download["n_subjects"])
    if download["source"] == "manifest":
        from brainseg.data.manifest_source import listed_ids

        return listed_ids(download)
    return dataset_ids(download, Path(source_dir))


def raw_modalities(download: dict[str, Any],
                   source_dir: str | Path = DEFAULT_SOURCE_DIR) -> tuple[str, ...]:
    """The modalities `download` writes for every subject (the file keys of the raw layout).

    All four, except for the LGG layout (t1, t1ce, flair): named by `download.layout`, or
    detected in a local folder. An archive behind a url is only unpacked later, so an
    LGG archive needs `download.layout: lgg` for Snakemake to expect its files.
    """
    if download["source"] in ("synthetic", "manifest"):
        return MODALITIES
    layout = download.get("layout", "auto")
    if layout == "auto" and download["source"] == "local":
        layout = layout_of(download, dataset_root(download, Path(source_dir)))
    if layout == "lgg":
        from brainseg.data.lgg import LGG_MODALITIES

        return LGG_MODALITIES
    return MODALITIES
