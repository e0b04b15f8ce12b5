"""A `manifest` source: a committed list of files, each fetched from a base URL and checked.

The list is a tab-separated file (`download.manifest`, `#` lines are comments) with one
row per file and the columns `subject`, `modality` (t1, t1ce, t2, flair, seg), `path`
(relative to the base URL), `bytes` and `sha256`. Every file is fetched with
`brainseg.io.fetch.fetch` (resumed after a cut, retried, size and SHA-256 verified, never
kept when they fail) into `<source-dir>/manifest/<subject>/<subject>_<modality>.nii[.gz]`:
a BraTS 2020 folder, ingested from there as a local one.
"""

from __future__ import annotations

import csv
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from brainseg.errors import BrainsegError

#: Base URL of `workflow/manifests/brats18.tsv`: the repository its files come from, at
#: the commit they were listed from (used when `download.url` is null).
DEFAULT_MANIFEST_URL = ("https://raw.githubusercontent.com/koriavinash1/DeepBrainSeg/"
                        "5d4f3810f1c776050b6937b6db5b7afa17527efd/")
COLUMNS = ("subject", "modality", "path", "bytes", "sha256")
KEYS = ("t1", "t1ce", "t2", "flair", "seg")
STAGING = "manifest"  # folder under --source-dir where the listed files are fetched
_SUBJECT = re.compile(r"[A-Za-z0-9._-]+")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ListedFile:
    """One row of a download manifest."""

    subject: str
    modality: str
    path: str
    size: int
    sha256: str

    @property
    def suffix(self) -> str:
        """`.nii.gz` or `.nii`, as the listed file is named."""
        return ".nii.gz" if self.path.endswith(".nii.gz") else ".nii"


def _row(path: Path, line: int, values: list[str]) -> ListedFile:
    """Parse and check one data line of a manifest."""
    where = f"{path}:{line}"
    if len(values) != len(COLUMNS):
        raise BrainsegError(f"{where}: expected {len(COLUMNS)} tab-separated columns, "
                            f"got {len(values)}")
    subject, modality, rel, size, sha256 = (v.strip() for v in values)
    if not _SUBJECT.fullmatch(subject):
        raise BrainsegError(f"{where}: subject {subject!r} is not letters, digits, '.', '_', '-'")
    if modality not in KEYS:
        raise BrainsegError(f"{where}: modality {modality!r} is not one of {', '.join(KEYS)}")
    parts = PurePosixPath(rel).parts
    if not rel or rel.startswith("/") or ".." in parts or "\\" in rel or "//" in rel:
        raise BrainsegError(f"{where}: path {rel!r} is not a relative path")
    if not rel.endswith((".nii.gz", ".nii")):
        raise BrainsegError(f"{where}: path {rel!r} is not a .nii or .nii.gz file")
    if not size.isdigit():
        raise BrainsegError(f"{where}: bytes {size!r} is not a non-negative integer")
    if not _SHA256.fullmatch(sha256):
        raise BrainsegError(f"{where}: sha256 {sha256!r} is not 64 lowercase hex digits")
    return ListedFile(subject, modality, rel, int(size), sha256)


def read_listing(path: str | Path) -> dict[str, dict[str, ListedFile]]:
    """Read and check a download manifest.

    Args:
        path: the TSV file.

    Returns:
        {subject: {modality: file}}, subjects sorted, each with all five keys.

    Raises:
        BrainsegError: naming the file (and line) for a missing file, wrong header, bad
            value, duplicate row or a subject lacking a modality.
    """
    path = Path(path)
    if not path.is_file():
        raise BrainsegError(f"download.manifest: file not found: {path}")
    with path.open(newline="") as fh:
        lines = [(i, r) for i, r in enumerate(csv.reader(fh, delimiter="\t"), 1)
                 if r and not r[0].startswith("#")]
    if not lines or tuple(c.strip() for c in lines[0][1]) != COLUMNS:
        raise BrainsegError(f"{path}: header must be {' '.join(COLUMNS)} (tab-separated)")
    listing: dict[str, dict[str, ListedFile]] = {}
    for line, values in lines[1:]:
        row = _row(path, line, values)
        files = listing.setdefault(row.subject, {})
        if row.modality in files:
            raise BrainsegError(f"{path}:{line}: {row.subject} {row.modality} listed twice")
        files[row.modality] = row
    if not listing:
        raise BrainsegError(f"{path}: no files listed")
    for subject, files in listing.items():
        missing = [k for k in KEYS if k not in files]
        if missing:
            raise BrainsegError(f"{path}: subject {subject} lacks {', '.join(missing)}")
    return {s: listing[s] for s in sorted(listing)}


def listed_ids(cfg: dict[str, Any]) -> list[str]:
    """Sorted subject ids of the manifest named by the `download` params."""
    return list(read_listing(cfg["manifest"]))


def base_url(cfg: dict[str, Any]) -> str:
    """`download.url`, or `DEFAULT_MANIFEST_URL` when null, ending with one `/`."""
    return (cfg.get("url") or DEFAULT_MANIFEST_URL).rstrip("/") + "/"


def staging_dir(source_dir: Path) -> Path:
    """The BraTS 2020 folder that listed files are fetched into (one folder per subject)."""
    return Path(source_dir) / STAGING


def fetch_listed(cfg: dict[str, Any], subject: str, source_dir: Path) -> Path:
    """Fetch (or reuse, when still valid) the five files of one listed subject.

    Args:
        cfg: the `download` params section (`manifest`, `url`).
        subject: a subject id of the manifest.
        source_dir: where the files are cached (see `staging_dir`).

    Returns:
        The staging folder, a BraTS 2020 dataset root holding `<subject>/`.

    Raises:
        BrainsegError: an unknown subject, or a file that could not be fetched or failed
            its size or SHA-256 (it is not kept); the message names the URL.
    """
    listing = read_listing(cfg["manifest"])
    if subject not in listing:
        raise BrainsegError(f"{cfg['manifest']}: subject {subject} is not listed")
    from brainseg.io.fetch import fetch

    root, base = staging_dir(source_dir), base_url(cfg)
    for key, item in listing[subject].items():
        url = base + urllib.parse.quote(item.path)
        try:
            fetch(url, root / subject, item.sha256, size=item.size,
                  name=f"{subject}_{key}{item.suffix}")
        except BrainsegError as exc:
            raise BrainsegError(f"{exc} ({subject} {key}, {cfg['manifest']})") from None
    return root
