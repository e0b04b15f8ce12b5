"""The fault-injection harness of `make faults` (benchmarks/faults.py), on the first stages.

Each runner takes the smoke pipeline up to `split`; then `download` and `split` are each
killed with SIGKILL half-way through their run, and the rerun must complete with the
reference's bytes and no temporary file left. `make faults` does every stage at three
points.
"""

from __future__ import annotations

import pytest

from benchmarks.bench_pipeline import tool_env
from benchmarks.faults import inject, prepare
from tests.conftest import REPO

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("runner", ["snakemake", "dvc"])
def test_a_killed_stage_reruns_to_the_same_bytes(runner, tmp_path):
    env = tool_env(REPO / "src")
    repo = prepare(tmp_path, runner, env, until=["split"])
    outcomes = inject(runner, repo, env, ["download", "split"], [0.5])
    assert len(outcomes) == 2
    assert all(o.killed for o in outcomes), outcomes  # each was killed while it ran
    failed = [o for o in outcomes if not o.survived]
    assert failed == [], failed
