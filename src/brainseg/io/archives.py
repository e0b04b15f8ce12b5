"""Unpack a downloaded archive (tar or zip) safely: every member checked before any is written."""

from __future__ import annotations

import logging
import posixpath
import re
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_dir

log = logging.getLogger(__name__)


def extract_archive(archive: Path, dest: Path, max_bytes: int = 64 * 2**30) -> Path:
    """Safely unpack a tar, tar.gz/tgz/tar.bz2/tar.xz or zip archive into `dest` (atomically).

    The format is detected by content; every member is checked before anything is written,
    into a temporary folder that replaces `dest` on success. `__MACOSX/`, `._*` are skipped.

    Args:
        archive: The archive file.
        dest: Folder to create (an existing one is replaced).
        max_bytes: Largest total uncompressed size accepted.

    Returns:
        `dest`.

    Raises:
        BrainsegError: Not an archive, a corrupt one, an unsafe member (absolute path, `..`,
            link leaving `dest`, device or fifo) or a total size above `max_bytes`.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise BrainsegError(f"{archive}: no such archive file")
    try:
        if tarfile.is_tarfile(archive):
            _extract_tar(archive, dest, max_bytes)
        elif zipfile.is_zipfile(archive):
            _extract_zip(archive, dest, max_bytes)
        else:
            raise BrainsegError(f"{archive}: not a tar or zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, RuntimeError) as exc:
        raise BrainsegError(f"{archive}: corrupt or unreadable archive ({exc})") from None
    log.info("%s: extracted into %s", archive, dest)
    return dest


def _escapes(path: str) -> bool:
    rel = posixpath.normpath(path)
    return rel == ".." or rel.startswith("../")


def _safe_name(archive: Path, name: str) -> str | None:
    """The normalized relative path of a member; None for junk; raise if it is unsafe."""
    if name.startswith("/") or re.match(r"[A-Za-z]:", name):
        raise BrainsegError(f"{archive}: member {name!r} has an absolute path")
    rel = posixpath.normpath(name)
    if _escapes(rel):
        raise BrainsegError(f"{archive}: member {name!r} escapes the destination")
    parts = PurePosixPath(rel).parts
    if rel == "." or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None
    return rel


def _check_tar(archive: Path, tf: tarfile.TarFile, max_bytes: int) -> list[tarfile.TarInfo]:
    """Validate every member of an open tar; return those to extract."""
    keep, links, total = [], set(), 0
    for member in tf.getmembers():
        rel = _safe_name(archive, member.name)
        if rel is None:
            continue
        if any(str(p) in links for p in PurePosixPath(rel).parents):
            raise BrainsegError(f"{archive}: member {member.name!r} goes through a link")
        if member.issym() or member.islnk():
            base, target = posixpath.dirname(rel) if member.issym() else "", member.linkname
            if target.startswith("/") or _escapes(posixpath.join(base, target)):
                raise BrainsegError(f"{archive}: member {member.name!r} links to {target!r} "
                                    "outside the destination")
            links.add(rel)
        elif not (member.isfile() or member.isdir()):
            raise BrainsegError(f"{archive}: member {member.name!r} is a device or fifo")
        total = _count(archive, total, member.size if member.isfile() else 0, member.name,
                       max_bytes)
        keep.append(member)
    return keep


def _count(archive: Path, total: int, size: int, name: str, max_bytes: int) -> int:
    """`total + size`, refusing an archive whose members add up to more than `max_bytes`."""
    total += size
    if total > max_bytes:
        raise BrainsegError(f"{archive}: uncompressed size exceeds {max_bytes} bytes "
                            f"(at member {name!r})")
    return total


def _extract_tar(archive: Path, dest: Path, max_bytes: int) -> None:
    with tarfile.open(archive) as tf:
        members = _check_tar(archive, tf, max_bytes)
        with atomic_dir(dest) as tmp:
            tf.extractall(tmp, members=members, filter="data")


def _check_zip(archive: Path, zf: zipfile.ZipFile, max_bytes: int) -> list[zipfile.ZipInfo]:
    """Validate every member of an open zip; return those to extract."""
    keep, total = [], 0
    for info in zf.infolist():
        if _safe_name(archive, info.filename.replace("\\", "/")) is None:
            continue
        total = _count(archive, total, info.file_size, info.filename, max_bytes)
        keep.append(info)
    return keep


def _extract_zip(archive: Path, dest: Path, max_bytes: int) -> None:
    """Extract member by member, counting the bytes really written against `max_bytes`."""
    with zipfile.ZipFile(archive) as zf:
        members = _check_zip(archive, zf, max_bytes)
        written = 0
        with atomic_dir(dest) as tmp:
            for info in members:
                target = tmp / posixpath.normpath(info.filename)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    while chunk := src.read(1 << 20):
                        written += len(chunk)
                        if written > max_bytes:
                            raise BrainsegError(f"{archive}: member {info.filename!r} inflates "
                                                f"beyond {max_bytes} bytes")
                        out.write(chunk)
