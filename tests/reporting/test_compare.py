"""`brainseg compare` on folders: the numbers, the outputs, non-finite HD95 and the refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.errors import BrainsegError
from brainseg.evaluation.metrics import METRICS
from brainseg.reporting.compare import format_table, metric_families, run_compare

N = 8


def per_subject(n: int = N, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """A per_subject.csv table as `evaluate` writes it: every metric per region + dice_mean."""
    rows = []
    for i in range(n):
        row: dict = {"subject": f"S-{i:03d}"}
        for m in METRICS:
            for j, r in enumerate(REGIONS):
                base = 0.9 - 0.1 * j - 0.02 * i if m != "hd95" else 5.0 + i + j
                row[f"{m}_{r}"] = base + shift * (i % 3)
        row["dice_mean"] = float(np.mean([row[f"dice_{r}"] for r in REGIONS]))
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.sample(frac=1.0, random_state=seed)  # shuffled: row order must not matter


def write(table: pd.DataFrame, folder: Path, name: str = "per_subject.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    table.to_csv(folder / name, index=False, na_rep=NOT_AVAILABLE)
    return folder


def brainseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainseg", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_folder_against_repo_root_by_hand(tmp_path):
    a_table, b_table = per_subject(), per_subject(shift=0.03, seed=1)
    a = write(a_table, tmp_path / "a" / "reports").parent  # a repo root
    b = write(b_table, tmp_path / "b")  # a reports/ folder
    out = tmp_path / "out"
    result = run_compare(str(a), str(b), out=out, n_boot=2000, seed=4)
    a_i = a_table.set_index("subject")
    b_i = b_table.set_index("subject").loc[a_i.index]
    for region in REGIONS:
        d = (b_i[f"dice_{region}"] - a_i[f"dice_{region}"]).to_numpy()
        s = result["regions"][region]
        assert s["n"] == N and s["n_dropped"] == 0
        assert s["mean_a"] == pytest.approx(a_i[f"dice_{region}"].mean())
        assert s["mean_diff"] == pytest.approx(d.mean())  # (0 + 0.03 + 0.06) pattern
        assert s["p_wilcoxon"] == pytest.approx(stats.wilcoxon(d).pvalue)
        assert s["ci_low"] <= s["mean_diff"] <= s["ci_high"]
        assert (s["n_higher"], s["n_lower"]) == (int((d > 0).sum()), 0)
    mean = result["regions"]["mean"]
    assert mean["mean_b"] == pytest.approx(b_table["dice_mean"].mean())
    assert json.loads((out / "comparison.json").read_text()) == result
    deltas = pd.read_csv(out / "deltas.csv")
    assert len(deltas) == 4 * N and set(deltas["region"]) == {*REGIONS, "mean"}
    assert deltas["delta"].to_numpy() == pytest.approx(deltas["b"] - deltas["a"])
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result == run_compare(str(a), str(b), n_boot=2000, seed=4)  # seeded
    table = format_table(result)
    assert [line.split()[0] for line in table.splitlines()[4:8]] == [*REGIONS, "mean"]
    # 3 of the 8 differences are 0: with 5 left, the exact test cannot reach 0.05
    assert "WT: with 5 non-zero differences the exact test's p cannot go below 0.0625" in table


def test_hd95_with_inf_and_na_drops_those_pairs_and_says_so(tmp_path):
    a_table, b_table = per_subject(), per_subject(shift=1.0)
    b_table.loc[b_table["subject"] == "S-002", "hd95_ET"] = np.inf
    a_table.loc[a_table["subject"] == "S-005", "hd95_TC"] = np.nan  # written as n/a
    result = run_compare(str(write(a_table, tmp_path / "a")), str(write(b_table, tmp_path / "b")),
                         metric="hd95", n_boot=500)
    regions = result["regions"]
    assert (regions["WT"]["n"], regions["WT"]["n_dropped"]) == (N, 0)
    assert (regions["ET"]["n"], regions["ET"]["n_dropped"]) == (N - 1, 1)
    assert (regions["TC"]["n"], regions["TC"]["n_dropped"]) == (N - 1, 1)
    assert (regions["mean"]["n"], regions["mean"]["n_dropped"]) == (N - 2, 2)
    assert np.isfinite(regions["mean"]["mean_diff"])
    table = format_table(result)
    assert "ET: 1 pair(s) dropped" in table and "mean: 2 pair(s) dropped" in table


def test_a_region_not_available_in_both_is_left_out_of_the_mean(tmp_path):
    a_table, b_table = per_subject(), per_subject(shift=0.01)
    for t in (a_table, b_table):
        t[["dice_TC", "dice_ET"]] = np.nan  # a whole-tumour-only source
    result = run_compare(str(write(a_table, tmp_path / "a")), str(write(b_table, tmp_path / "b")),
                         n_boot=200)
    assert result["regions"]["TC"]["n"] == 0 and result["regions"]["TC"]["mean_diff"] is None
    assert result["regions"]["mean"] == result["regions"]["WT"]
    assert "n/a" in format_table(result)


def test_identical_runs_give_zero_difference_and_p_one(tmp_path):
    a = write(per_subject(), tmp_path / "a")
    s = run_compare(str(a), str(a), n_boot=100)["regions"]["WT"]
    assert (s["mean_diff"], s["ci_low"], s["ci_high"], s["p_wilcoxon"]) == (0, 0, 0, 1.0)


def test_metric_families_of_a_table():
    assert metric_families(per_subject()) == sorted(METRICS)


@pytest.mark.parametrize("case", ["subjects", "metric", "missing", "not-csv", "duplicate",
                                  "not-a-number"])
def test_refusals_name_both_sources(case, tmp_path):
    a = write(per_subject(), tmp_path / "a")
    b_table = per_subject(n=N + 2)
    b = tmp_path / "b"
    expected = {"subjects": r"different subjects: 2 only in B \(S-008, S-009\)",
                "metric": "B has no column hd95_WT", "missing": "B: no .*per_subject.csv",
                "not-csv": "B: no `subject` column", "duplicate": "listed twice: S-001",
                "not-a-number": "B: column dice_TC holds a value that is not a number "
                                r"\('0,7'\)"}[case]
    if case == "subjects":
        write(b_table, b)
    elif case == "metric":
        write(per_subject().drop(columns=[f"hd95_{r}" for r in REGIONS]), b)
    elif case == "not-csv":
        b.mkdir()
        (b / "per_subject.csv").write_bytes(b"\x00\x01 not a table\n")
    elif case == "not-a-number":
        table = per_subject()
        table["dice_TC"] = table["dice_TC"].astype(object)
        table.loc[table["subject"] == "S-003", "dice_TC"] = "0,7"
        write(table, b)
    elif case == "duplicate":
        table = per_subject()
        write(pd.concat([table, table[table["subject"] == "S-001"]]), b)
    with pytest.raises(BrainsegError, match=expected) as info:
        run_compare(str(a), str(b), metric="hd95" if case == "metric" else "dice", n_boot=10)
    assert f"A ({a}) with B ({b})" in str(info.value)


def test_cli_prints_the_table_writes_files_and_refuses_with_exit_1(tmp_path):
    write(per_subject(), tmp_path / "a")
    write(per_subject(shift=0.02), tmp_path / "b")
    done = brainseg("compare", "a", "b", "--bootstrap", "300", "--seed", "1", "--labels",
                    "base", "new", "--out", "cmp", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("dice: B - A over 8 paired subjects")
    assert "A (base): a" in done.stdout and "mean " in done.stdout
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {
        "comparison.json", "deltas.csv", "comparison.png"}
    write(per_subject(n=3), tmp_path / "c")
    bad = brainseg("compare", "a", "c", "--out", "bad", cwd=tmp_path)
    assert bad.returncode == 1 and bad.stdout == ""
    assert len(bad.stderr.strip().splitlines()) == 1
    assert "cannot compare A (a) with B (c)" in bad.stderr and "only in A" in bad.stderr
    assert not (tmp_path / "bad").exists()
    assert brainseg("compare", "a", "b", "--bootstrap", "0", cwd=tmp_path).returncode == 2
