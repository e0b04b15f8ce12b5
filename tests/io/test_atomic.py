"""Atomic writes: the output appears whole or not at all; what a killed writer left is removed."""

from __future__ import annotations

import subprocess
import sys

from brainseg.io.atomic import atomic_dir, atomic_file


def test_a_killed_writers_temporary_files_are_removed_by_the_next_write(tmp_path):
    """As a rerun after a SIGKILL finds them; a live process's are kept."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (tmp_path / f".S-1.tmp-{dead}").mkdir()
    (tmp_path / f".S-1.tmp-{dead}" / "half.nii.gz").write_bytes(b"half")
    (tmp_path / f".tmp-{dead}-m.pt").write_bytes(b"half")
    (tmp_path / ".tmp-1-m.pt").write_bytes(b"init's: alive")  # pid 1 runs
    with atomic_dir(tmp_path / "S-1") as tmp:
        (tmp / "a").write_text("a")
    with atomic_file(tmp_path / "m.pt") as tmp:
        tmp.write_text("m")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tmp-1-m.pt", "S-1", "m.pt"]


def test_a_failed_write_leaves_neither_output_nor_temporary_file(tmp_path):
    for writer, name in ((atomic_dir, "S-2"), (atomic_file, "x.csv")):
        try:
            with writer(tmp_path / name) as tmp:
                (tmp / "a" if tmp.is_dir() else tmp).write_text("part")
                raise RuntimeError("fails half-way")
        except RuntimeError:
            pass
    assert list(tmp_path.iterdir()) == []


def test_a_signal_outside_the_try_leaves_nothing_once_pending_writes_are_removed(tmp_path):
    """A signal that lands after the temporary folder was made but before the `with` body
    leaves a suspended writer whose `finally` never runs (the worker then `os._exit`s):
    `remove_pending`, which the CLI and the workers call when stopped, removes it."""
    from brainseg.io.atomic import remove_pending

    folder, file = atomic_dir(tmp_path / "S-3"), atomic_file(tmp_path / "S-3.csv")
    inner = folder.__enter__() / "half.nii.gz"
    inner.write_bytes(b"half")
    file.__enter__().write_text("half")
    assert len(list(tmp_path.iterdir())) == 2
    remove_pending()
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(tmp_path / "S-4") as tmp:  # a finished write is no longer pending
        (tmp / "a").write_text("a")
    remove_pending()
    assert [p.name for p in tmp_path.iterdir()] == ["S-4"]
