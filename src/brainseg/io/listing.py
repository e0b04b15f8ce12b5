"""Listing folders: the one rule for which entries are skipped (hidden files, macOS junk)."""

from __future__ import annotations

from pathlib import Path

from brainseg.errors import BrainsegError


def visible(path: Path) -> bool:
    """False for hidden entries (`.*`, also macOS `._*` resource forks and the temporary
    folders of atomic writes) and `__MACOSX` folders."""
    return not path.name.startswith(".") and path.name != "__MACOSX"


def subject_folders(root: str | Path) -> list[Path]:
    """The visible sub-folders of `root` (one per subject), sorted by name.

    Raises:
        BrainsegError: `root` is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise BrainsegError(f"{root}: folder not found")
    return sorted(p for p in root.iterdir() if p.is_dir() and visible(p))
