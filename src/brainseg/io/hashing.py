"""File checksums: one streaming pass for any number of hashlib algorithms."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_digests(path: str | Path, *algorithms: str, chunk_size: int = 1 << 20) -> tuple[str, ...]:
    """Hex digests of a file for each algorithm (`"sha256"`, `"md5"`, ...), read once."""
    digests = [hashlib.new(name) for name in algorithms]
    with Path(path).open("rb") as fh:
        while chunk := fh.read(chunk_size):
            for digest in digests:
                digest.update(chunk)
    return tuple(d.hexdigest() for d in digests)
