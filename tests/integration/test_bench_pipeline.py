"""What benchmarks/bench_pipeline.py reads: Snakemake's benchmark files and a process tree's RSS."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from benchmarks.bench_pipeline import measure, read_benchmark_tsvs, stage_figures, tool_env

pytestmark = pytest.mark.integration
SMOKE = yaml.safe_load((Path(__file__).parents[1] / "params-smoke.yaml").read_text())
RULES = {"download_subject", "download", "extract", "normalize", "split", "train", "export",
         "postprocess", "evaluate", "figures", "realism"}


def test_every_rule_writes_a_benchmark_file_that_parses(snakemake_repo):
    stages = read_benchmark_tsvs(snakemake_repo / "logs" / "benchmarks")
    assert set(stages) == RULES  # every rule that ran (fetch: url sources only)
    n = SMOKE["download"]["n_subjects"]
    for rule in ("download_subject", "extract", "normalize"):
        assert stages[rule]["jobs"] == n, rule
    for rule, entry in stages.items():
        assert entry["s"] > 0 and entry["s_max"] <= entry["s"], rule
    assert 50 < stages["train"]["max_rss_mib"] < 8192  # a torch process, sampled by Snakemake
    figures = {f.key: f for f in stage_figures(stages, "cmd")}
    assert figures["e2e.stage.extract"].extra["jobs"] == n
    assert figures["e2e.stage.train"].value == round(stages["train"]["s"], 2)


def test_tree_sampler_sees_the_memory_of_a_grandchild(tmp_path):
    """A child shell starts Python, which holds 300 MiB: the tree's peak includes it."""
    hold = "import time; x = bytearray(300 * 2**20); x[::4096] = b'1' * len(x[::4096]); " \
           "time.sleep(1.0)"
    cmd = ["sh", "-c", f'"{sys.executable}" -c "{hold}"; true']
    got = measure(cmd, tmp_path, tool_env(), tmp_path / "out.log")
    assert got.peak_rss > 300 * 2**20
    assert got.wall >= 1.0
    with pytest.raises(RuntimeError, match="exited 3"):
        measure(["sh", "-c", "exit 3"], tmp_path, tool_env(), tmp_path / "fail.log")
