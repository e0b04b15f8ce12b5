from __future__ import annotations

import json

from brainseg.data.download import run_download
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
