"""One runner at a time in a working copy: Snakemake and `dvc repro` refuse each other.

Snakemake's lock (`.snakemake/locks`) keeps out a second Snakemake, and DVC's
(`.dvc/tmp/rwlock`) a second `dvc repro`, but neither sees the other, and both write the
same outputs (DVC removes a stage's outputs before it runs it). So both take
`.brainseg-runner.lock` in the working copy, an advisory `flock` the kernel drops when its
holder dies (even by SIGKILL: nothing stale to clean):
- Snakemake's main process takes it exclusively in its `onstart` hook and keeps it to
  the end (dry runs take nothing), and with it DVC's own repository lock
  (`.dvc/tmp/lock`, also a `flock`), so that `dvc repro` stops before it removes any
  output ("Unable to acquire lock"; `dvc status` waits for the end of the run too);
- every `brainseg` command that DVC runs as a stage (DVC sets `DVC_STAGE` and `DVC_ROOT`
  for them) takes it shared for its run, so the processes of one stage (torchrun's
  ranks) share it.
Whichever comes second ends at once with one message that names the other; the first
goes on untouched. The lock decides nothing about outputs, only who may write them.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from brainseg.errors import BrainsegError

LOCK_NAME = ".brainseg-runner.lock"
DVC_LOCK = ".dvc/tmp/lock"  # DVC's repository lock (zc.lockfile: a flock)

# the open lock file of this process: held until the process ends
_held: list[int] = []


def hold_for_snakemake(root: str | Path = ".") -> None:
    """Take the lock exclusively for this (Snakemake's main) process, or refuse."""
    root = Path(root).resolve()
    locks = [root / LOCK_NAME]
    if (root / ".dvc").is_dir():
        (root / ".dvc" / "tmp").mkdir(exist_ok=True)
        locks.append(root / DVC_LOCK)
    held = []
    for path in locks:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            for other in held:
                os.close(other)
            holds = path.relative_to(root)
            raise BrainsegError(
                f"{root}: `dvc repro` is running in this working copy (it holds {holds}); "
                "Snakemake would write the same outputs. Wait for it to end (or stop it), "
                "then run again"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"snakemake pid {os.getpid()} since "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
        held.append(fd)
    _held.extend(held)


def hold_for_dvc_stage(environ: os._Environ[str] | dict[str, str] | None = None) -> None:
    """Under `dvc repro` (DVC_STAGE set), take the lock shared for this process, or refuse."""
    environ = os.environ if environ is None else environ
    stage, root = environ.get("DVC_STAGE"), environ.get("DVC_ROOT")
    if not stage or not root:
        return
    fd = os.open(Path(root) / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "snakemake"
        os.close(fd)
        raise BrainsegError(
            f"{root}: Snakemake ({holder}) is running in this working copy; DVC stage "
            f"{stage!r} would write the same outputs. Wait for it to end (or stop it), "
            "then run `dvc repro` again"
        ) from None
    _held.append(fd)


def release() -> None:
    """Drop the lock this process holds (the end of the process drops it too)."""
    while _held:
        os.close(_held.pop())
