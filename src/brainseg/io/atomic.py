"""Write to a temporary name, then rename: no half-written output ever looks complete.

A process killed outright (SIGKILL) leaves its temporary name behind (hidden, so it never
looks like the output); the next write of the same output removes it. A process stopped by
a signal removes every temporary name it still holds (`remove_pending`), even one whose
`finally` the signal never reached (it landed between the creation and the `try`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

# temporary files and folders this process has created and not yet renamed or removed
_PENDING: set[Path] = set()


def _discard(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def remove_pending() -> None:
    """Remove the temporary files and folders of this process's unfinished atomic writes
    (called when a signal stops the process: the CLI, the pool's workers)."""
    for tmp in sorted(_PENDING, key=lambda p: len(p.parts), reverse=True):
        _discard(tmp)
    _PENDING.clear()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(path: Path) -> None:
    """Remove the temporary files and folders an earlier write of `path` left when its
    process was killed (SIGKILL, a lost node): those of a process that no longer runs."""
    patterns = (f".{path.name}.tmp-*", f".tmp-*-{path.name}")
    for pattern in patterns:
        for stale in path.parent.glob(pattern):
            pid = stale.name.split(".tmp-", 1)[1].split("-", 1)[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                _discard(stale)


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it to `path` only if the block succeeds.

    The temporary name is `.tmp-<pid>-<name>`: it keeps the suffixes of `path`, from
    which nibabel and numpy pick the format.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    _PENDING.add(tmp)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        _PENDING.discard(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary directory; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path)
    tmp = _tmp_name(path)
    _PENDING.add(tmp)
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        _PENDING.discard(tmp)


def write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write a binary file atomically."""
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
