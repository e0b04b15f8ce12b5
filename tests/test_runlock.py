"""brainseg.runlock: Snakemake's main process and DVC's stage commands refuse each other.

In one process: a flock belongs to an open file, so two opens conflict as two processes do.
The runners themselves are in tests/integration/test_concurrency.py.
"""

from __future__ import annotations

import fcntl
import os

import pytest

from brainseg import runlock
from brainseg.errors import BrainsegError


@pytest.fixture(autouse=True)
def _release():
    yield
    runlock.release()


def dvc_env(root) -> dict[str, str]:
    return {"DVC_STAGE": "download", "DVC_ROOT": str(root)}


def test_a_dvc_stage_is_refused_while_snakemake_runs_and_names_it(tmp_path):
    runlock.hold_for_snakemake(tmp_path)
    with pytest.raises(BrainsegError, match=r"Snakemake \(snakemake pid \d+ since .*\) is "
                                            r"running in this working copy; DVC stage "
                                            r"'download'"):
        runlock.hold_for_dvc_stage(dvc_env(tmp_path))


def test_snakemake_is_refused_while_a_dvc_stage_runs(tmp_path):
    runlock.hold_for_dvc_stage(dvc_env(tmp_path))
    runlock.hold_for_dvc_stage(dvc_env(tmp_path))  # the stage's other processes share it
    with pytest.raises(BrainsegError, match="`dvc repro` is running in this working copy"):
        runlock.hold_for_snakemake(tmp_path)


def test_snakemake_holds_dvc_s_own_repository_lock_and_is_refused_while_dvc_holds_it(tmp_path):
    (tmp_path / ".dvc").mkdir()
    runlock.hold_for_snakemake(tmp_path)
    fd = os.open(tmp_path / ".dvc" / "tmp" / "lock", os.O_RDWR)
    with pytest.raises(BlockingIOError):  # what zc.lockfile, DVC's lock, tries
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    runlock.release()
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # DVC's, now
    with pytest.raises(BrainsegError, match=r"it holds \.dvc/tmp/lock\)"):
        runlock.hold_for_snakemake(tmp_path)
    os.close(fd)
    runlock.hold_for_snakemake(tmp_path)  # DVC is done: Snakemake runs


def test_outside_dvc_nothing_is_taken(tmp_path):
    runlock.hold_for_dvc_stage({})
    runlock.hold_for_dvc_stage({"DVC_STAGE": "x"})  # no DVC_ROOT: not DVC's run
    assert not (tmp_path / runlock.LOCK_NAME).exists()
    runlock.hold_for_snakemake(tmp_path)  # and Snakemake is free to run
