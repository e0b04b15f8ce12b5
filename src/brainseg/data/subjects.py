"""Subject ids, derived from params alone (cheap: the Snakefile calls this at parse time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def local_ids(path: str | Path) -> list[str]:
    """Sub-folders of a BraTS 2020 download (hidden entries skipped), sorted."""
    root = Path(path)
    if not root.is_dir():
        raise BrainsegError(f"download.path: folder not found: {root}")
    ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not ids:
        raise BrainsegError(f"download.path: no subject folders in {root}")
    return ids


def subject_ids(download: dict[str, Any]) -> list[str]:
    """All subject ids for the `download` params section."""
    if download["source"] == "synthetic":
        return synthetic_ids(download["prefix"], download["n_subjects"])
    if not download.get("path"):
        raise BrainsegError("download.path: required when download.source is 'local'")
    return local_ids(download["path"])
