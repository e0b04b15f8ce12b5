"""The benchmark harness: results file, performance table, and its agreement with the results."""

from __future__ import annotations

import json

import pytest

from benchmarks import report, run
from benchmarks.common import LATEST, Figure, describe, record


def _fig(key: str, value: float, met: bool | None = None) -> Figure:
    return Figure(key, f"label {key}", value, "s", reference=2.0, reference_label="floor",
                  ratio=value / 2.0, ratio_label="x floor", target="<= 1x" if met is not None
                  else "", met=met, repeats=3, command="python -m x")


def test_record_merges_sections_and_describes_the_machine(tmp_path):
    path = tmp_path / "latest.json"
    record("a", [_fig("a.one", 1.0, True)], path=path)
    record("b", [_fig("b.one", float("nan"))], path=path)
    record("a", [_fig("a.two", 3.0, False)], path=path)  # replaces section a, keeps b
    data = json.loads(path.read_text())
    assert set(data["sections"]) == {"a", "b"}
    assert [f["key"] for f in data["sections"]["a"]["figures"]] == ["a.two"]
    assert data["sections"]["b"]["figures"][0]["value"] is None  # NaN is not valid JSON
    for key in ("cpu", "cores", "torch", "date"):
        assert data["machine"][key]
    assert not list(tmp_path.glob(".*tmp"))


def test_describe_and_table_show_reference_ratio_and_verdict(tmp_path):
    assert describe(_fig("a.x", 3.0, False)) == (
        "label a.x: 3 s | floor: 2 s | ratio 1.5 x floor | target <= 1x: MISSED")
    path = tmp_path / "latest.json"
    record("io", [_fig("io.x", 1.0, True)], path=path)
    record("training", [_fig("training.x", 3.0, False)], path=path)
    table = report.render(json.loads(path.read_text()))
    rows = [line for line in table.splitlines() if line.startswith("| label")]
    assert rows == ["| label io.x | 1 s | 2 s (floor) | 0.5 x floor | <= 1x | yes |",
                    "| label training.x | 3 s | 2 s (floor) | 1.5 x floor | <= 1x | **no** |"]
    doc = tmp_path / "performance.md"
    doc.write_text(f"intro\n{report.START}\nold\n{report.END}\noutro\n")
    assert report.update(path, doc) == 0
    assert doc.read_text() == f"intro\n{table}\noutro\n"
    assert report.update(path, doc, check=True) == 0
    record("io", [_fig("io.x", 1.5, True)], path=path)
    assert report.update(path, doc, check=True) == 1
    doc.write_text("no markers\n")
    with pytest.raises(SystemExit, match="markers"):
        report.update(path, doc)


def test_performance_table_is_made_from_latest_results():
    """The committed docs/performance.md table is exactly what latest.json gives."""
    data = json.loads(LATEST.read_text())
    assert {"io", "training", "loader", "predict", "e2e", "noop"} <= set(data["sections"])
    assert report.update(check=True) == 0


def test_run_refuses_unknown_benchmark_names():
    with pytest.raises(SystemExit, match="unknown benchmark"):
        run._names("io,nonsense")
    assert run._names("io,training") == ["io", "training"]


def test_bench_memory_reads_what_the_slurm_profile_requests_per_rule():
    from benchmarks.bench_memory import requested_mb

    per_rule, default = requested_mb()
    assert default > 0
    assert per_rule["train_fold"] >= per_rule["extract"] > 0  # a training needs the most
    assert set(per_rule) >= {"download_subject", "extract", "normalize", "train", "evaluate"}


def test_the_machine_line_names_each_machine_with_its_sections():
    amd = {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "torch": "2.13.0+cpu"}
    xeon = dict(amd, cpu="Intel Xeon")
    one = {"machine": amd, "sections": {"io": {"machine": amd, "figures": []},
                                        "faults": {"machine": amd, "figures": []}}}
    assert report.render(one).splitlines()[1].startswith(
        "Machine: AMD EPYC, 2 cores, 23.5 GiB, torch 2.13.0+cpu; ")
    two = {"machine": xeon, "sections": {"io": {"machine": amd, "figures": []},
                                         "faults": {"machine": xeon, "figures": []}}}
    assert report.render(two).splitlines()[1].startswith(
        "Machines: AMD EPYC, 2 cores, 23.5 GiB, torch 2.13.0+cpu (io); "
        "Intel Xeon, 2 cores, 23.5 GiB, torch 2.13.0+cpu (faults); ")


def test_cv_real_pairs_each_configuration_with_the_reference_subject_by_subject(tmp_path):
    from benchmarks.cv_real import paired_table

    def entry(name: str, dice: list[tuple[float, float, float]]) -> dict:
        rows = [{"subject": f"S{i}", "fold": i % 2, "dice_WT": wt, "dice_TC": tc, "dice_ET": et}
                for i, (wt, tc, et) in enumerate(dice)]
        return {"config": name, "per_subject": rows,
                "dice_mean": sum(sum(d) for d in dice) / (3 * len(dice))}

    results = tmp_path / "cv.json"
    results.write_text(json.dumps({
        "preset": entry("preset", [(0.8, 0.6, 0.5), (0.9, 0.7, 0.6), (0.7, 0.5, 0.4)]),
        # WT +0.1, +0.0, +0.2 (mean 0.1, SE 0.1/sqrt 3); TC and ET the same
        "wider": entry("wider", [(0.9, 0.6, 0.5), (0.9, 0.7, 0.6), (0.9, 0.5, 0.4)]),
    }))
    lines = paired_table(results, "preset").splitlines()
    assert lines[0].startswith("| configuration | subjects | WT - preset")
    assert lines[2] == ("| wider | 3 | +0.100 ± 0.058 (2/3 better) | +0.000 ± 0.000 (0/3 better) "
                        "| +0.000 ± 0.000 (0/3 better) | +0.033 ± 0.019 (2/3 better) |")
    with pytest.raises(SystemExit, match="no configuration 'tuned'"):
        paired_table(results, "tuned")
