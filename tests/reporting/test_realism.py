from __future__ import annotations

import csv
import json

import pytest

from brainseg.data.cohort_stats import run_cohort_stats
from brainseg.data.download import run_download
from brainseg.errors import BrainsegError
from brainseg.reporting.cohort_gaps import distances, gap_table, top_gaps
from brainseg.reporting.realism import run_realism
from tests.evaluation.test_inference import save_checkpoint

PNG = b"\x89PNG\r\n\x1a\n"


def test_realism_compares_a_cohort_with_the_real_case(params, tiny_cohort, real_case, tmp_path):
    params["download"].update(source="local", path=str(tiny_cohort))
    params["extract"].update(image_size=32, min_brain_pixels=4)
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    save_checkpoint(tmp_path / "m.pt", image_size=32)
    summary = run_realism(params=params, raw_dir=tmp_path / "raw", real=real_case,
                          model=tmp_path / "m.pt", out_dir=tmp_path / "fig",
                          summary_out=tmp_path / "realism.json")
    assert json.loads((tmp_path / "realism.json").read_text()) == summary
    assert len(summary["synthetic_subjects"]) == params["realism"]["max_subjects"]
    for who in ("synthetic", "real"):
        for region in ("brain", "edema", "core"):
            assert len(summary["intensity"][who][region]["mean"]) == 4
    # normal-appearing brain is z-scored: its mean is near 0 in every modality
    assert all(abs(m) < 0.5 for m in summary["intensity"]["real"]["brain"]["mean"])
    scores = summary["real_scores"]
    assert summary["real_subjects"] == [real_case.name] and scores["n_subjects"] == 1
    assert 0.0 <= scores["dice"]["WT"]["mean"] <= 1.0
    assert scores["per_subject"][0]["dice_ET"] in (0.0, 1.0)  # the real case has no ET
    for name in ("histograms", "tumour_volumes", "synthetic_vs_real"):
        assert (tmp_path / "fig" / f"{name}.png").read_bytes()[:8] == PNG


def test_realism_scores_every_subject_of_a_real_folder(params, tiny_cohort, real_case,
                                                       tmp_path):
    params["download"].update(source="local", path=str(tiny_cohort))
    params["extract"].update(image_size=32, min_brain_pixels=4)
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    save_checkpoint(tmp_path / "m.pt", image_size=32)
    panel = tmp_path / "panel"
    panel.mkdir()
    for name in ("A", "B"):
        (panel / name).mkdir()
        for f in real_case.iterdir():
            (panel / name / f.name.replace(real_case.name, name)).symlink_to(f)
    summary = run_realism(params=params, raw_dir=tmp_path / "raw", real=panel,
                          model=tmp_path / "m.pt", out_dir=tmp_path / "fig",
                          summary_out=tmp_path / "realism.json")
    scores = summary["real_scores"]
    assert summary["real_subjects"] == ["A", "B"] and scores["n_subjects"] == 2
    assert [r["subject"] for r in scores["per_subject"]] == ["A", "B"]
    # the same scan twice: no spread
    assert scores["dice"]["WT"]["std"] == 0.0
    assert scores["dice"]["WT"]["mean"] == scores["per_subject"][0]["dice_WT"]


def test_realism_tabulates_the_gap_to_a_real_summary(params, tiny_cohort, real_case, tmp_path):
    """Against a summary fitted on the very subjects compared, every gap is 0; the table,
    its CSV and the figures are in the figure folder."""
    params["download"].update(source="local", path=str(tiny_cohort))
    params["extract"].update(image_size=32, min_brain_pixels=4)
    params["realism"]["max_subjects"] = 5
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    run_cohort_stats(params=params, fit=tmp_path / "raw", out=tmp_path / "real.json")
    summary = run_realism(params=params, raw_dir=tmp_path / "raw", real=real_case,
                          out_dir=tmp_path / "fig", summary_out=tmp_path / "realism.json",
                          real_stats=tmp_path / "real.json")
    gaps = summary["cohort_gaps"]
    assert gaps["preprocessing_matches"] and gaps["real_subjects"] == 5
    assert gaps["distance"]["all"] == 0.0 and gaps["distance"]["texture"] == 0.0
    # the five tiny subjects share one tumour: no spread of its shape, so no gap defined
    assert gaps["distance"]["shape"] is None
    table = json.loads((tmp_path / "fig" / "cohort_gaps.json").read_text())["table"]
    rows = list(csv.DictReader((tmp_path / "fig" / "cohort_gaps.csv").open()))
    assert [r["statistic"] for r in rows] == [r["statistic"] for r in table] == sorted(
        r["statistic"] for r in table)
    assert {"shape.wt_cm3", "texture.t2.spectrum_slope", "intensity.flair.edema.q50"} \
        <= {r["statistic"] for r in table}
    assert all(r["gap"] in (0.0, None) for r in table)
    for name in ("cohort_intensity", "cohort_gaps"):
        assert (tmp_path / "fig" / f"{name}.png").read_bytes()[:8] == PNG
    # another preprocessing than the fit's is flagged
    params["normalize"]["clip_percentiles"] = [1.0, 99.0]
    again = run_realism(params=params, raw_dir=tmp_path / "raw", real=real_case,
                        out_dir=tmp_path / "fig", summary_out=tmp_path / "realism.json",
                        real_stats=tmp_path / "real.json")
    assert not again["cohort_gaps"]["preprocessing_matches"]
    assert again["cohort_gaps"]["distance"]["all"] > 0


def test_gap_table_by_hand():
    synthetic = {"a.x": {"n": 4, "mean": 3.0, "std": 1.0}, "b.y": {"n": 4, "mean": 1.0,
                                                                   "std": None},
                 "only.synthetic": {"n": 1, "mean": 0.0, "std": None}}
    real = {"a.x": {"n": 10, "mean": 1.0, "std": 0.5}, "b.y": {"n": 1, "mean": 0.0,
                                                               "std": None}}
    rows = gap_table(synthetic, real)
    assert [r["statistic"] for r in rows] == ["a.x", "b.y"]
    assert rows[0]["gap"] == 4.0 and rows[1]["gap"] is None
    assert distances(rows) == {"all": 4.0, "intensity": None, "texture": None, "shape": None}
    assert top_gaps(rows) == [rows[0]]


def test_a_bad_real_summary_stops_realism_before_any_output(params, tiny_cohort, real_case,
                                                           tmp_path):
    params["download"].update(source="local", path=str(tiny_cohort))
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    (tmp_path / "real.json").write_text("{not json")
    with pytest.raises(BrainsegError, match=r"real\.json"):
        run_realism(params=params, raw_dir=tmp_path / "raw", real=real_case,
                    out_dir=tmp_path / "fig", summary_out=tmp_path / "realism.json",
                    real_stats=tmp_path / "real.json")
    assert not (tmp_path / "fig").exists() and not (tmp_path / "realism.json").exists()
