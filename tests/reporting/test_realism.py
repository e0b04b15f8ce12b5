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
    assert 0.0 <= summary["real_scan"]["dice_WT"] <= 1.0
    assert summary["real_scan"]["dice_ET"] in (0.0, 1.0)  # the real case has no ET
    for name in ("histograms", "tumour_volumes", "synthetic_vs_real"):
        assert (tmp_path / "fig" / f"{name}.png").read_bytes()[:8] == PNG
