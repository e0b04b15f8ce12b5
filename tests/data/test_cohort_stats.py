"""The cohort statistics on constructed volumes with known answers, and the fit of a real
cohort's summary (the 20 real BraTS 2018 subjects of ../shared, where present)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from brainseg.data.cohort_stats import (
    read_summary,
    run_cohort_stats,
    select,
    subject_stats,
    summarize,
)
from brainseg.data.loading import load_subject
from brainseg.data.shape_stats import compactness, n_components, shape_summary, ventricle_mask
from brainseg.data.tissue_stats import (
    gradient_magnitude,
    intensity_summary,
    local_variance,
    spectrum_slope,
)
from brainseg.errors import BrainsegError
from tests.conftest import REPO, write_subject

BRATS18 = REPO.parent / "shared" / "fixtures" / "brats18"
needs_brats18 = pytest.mark.skipif(not (BRATS18 / "MANIFEST.tsv").is_file(),
                                   reason=f"real BraTS 2018 fixture not found at {BRATS18}")


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius ** 2


def test_quantiles_of_a_known_distribution():
    x = np.arange(1, 10001, dtype=np.float64)  # uniform on 1..10000
    s = intensity_summary(x)
    assert s["q05"] == pytest.approx(np.percentile(x, 5)) == pytest.approx(500.95)
    assert s["q50"] == pytest.approx(5000.5) and s["mean"] == pytest.approx(5000.5)
    assert s["std"] == pytest.approx(np.sqrt((10000 ** 2 - 1) / 12))
    normal = np.random.default_rng(0).normal(2.0, 3.0, 400_000)
    t = intensity_summary(normal)
    assert t["q75"] - t["q25"] == pytest.approx(2 * 0.6745 * 3.0, rel=0.01)
    assert t["q95"] == pytest.approx(2.0 + 1.6449 * 3.0, rel=0.01)
    assert all(np.isnan(v) for v in intensity_summary(np.array([])).values())


def test_constant_image_has_zero_local_variance_and_gradient():
    mask = np.zeros((3, 20, 20), bool)
    mask[:, 4:16, 4:16] = True
    image = np.full(mask.shape, 1.7, np.float16)
    assert local_variance(image, mask) == pytest.approx(0.0, abs=1e-12)
    assert gradient_magnitude(image, mask) == pytest.approx(0.0, abs=1e-12)


def test_local_variance_of_a_checkerboard_and_gradient_of_a_ramp():
    mask = np.ones((2, 16, 16), bool)
    checker = (np.indices((2, 16, 16)).sum(0) % 2).astype(np.float64)  # 0/1 alternating
    # every 3 x 3 window holds 4 or 5 ones of 9: variance 20/81
    assert local_variance(checker, mask) == pytest.approx(20 / 81)
    ramp = np.broadcast_to(0.5 * np.arange(16.0), (2, 16, 16))
    assert gradient_magnitude(ramp, mask) == pytest.approx(0.5)
    assert np.isnan(local_variance(checker, np.zeros_like(mask)))


@pytest.mark.parametrize("beta", [0.0, 2.0, 3.0])
def test_slope_of_a_power_law_image(beta):
    n, rng = 128, np.random.default_rng(1)
    f = np.fft.fftfreq(n) * n
    k = np.hypot(f[:, None], f[None, :])
    amplitude = np.where(k > 0, np.maximum(k, 1e-9) ** (-beta / 2), 0.0)
    phases = np.exp(2j * np.pi * rng.random((8, n, n)))
    images = np.fft.ifft2(amplitude * phases).real
    assert spectrum_slope(images) == pytest.approx(-beta, abs=0.15)


def test_sphere_volume_and_compactness():
    spacing = (1.0, 1.0, 2.0)
    grid = np.indices((60, 60, 30)).astype(np.float64)
    mm = [g * h for g, h in zip(grid, spacing, strict=True)]
    sphere = sum((m - 30.0) ** 2 for m in mm) <= 15.0 ** 2  # r = 15 mm on 1 x 1 x 2 mm voxels
    volume = sphere.sum() * 2.0 / 1000
    assert volume == pytest.approx(4 / 3 * np.pi * 15 ** 3 / 1000, rel=0.02)
    assert compactness(sphere, spacing) == pytest.approx(1.0, abs=0.02)
    bar = np.zeros((60, 60, 30), bool)
    bar[10:50, 28:32, 13:17] = True  # a 40 x 4 x 8 mm bar
    assert compactness(bar, spacing) < 0.5


def test_two_blobs_are_two_components_and_diagonal_neighbours_one():
    mask = ball((30, 30, 30), (8, 8, 8), 4) | ball((30, 30, 30), (21, 21, 21), 4)
    assert n_components(mask) == 2
    diagonal = np.zeros((4, 4, 4), bool)
    diagonal[0, 0, 0] = diagonal[1, 1, 1] = True  # 26-connected
    assert n_components(diagonal) == 1


def test_shape_summary_of_a_constructed_subject():
    shape, spacing = (80, 80, 80), (1.0, 1.0, 1.0)
    brain = ball(shape, (40, 40, 40), 35)
    seg = np.zeros(shape, np.uint8)
    seg[ball(shape, (40, 40, 60), 8)] = 2
    seg[ball(shape, (40, 40, 60), 5)] = 1
    seg[ball(shape, (40, 40, 60), 3)] = 4
    t1, t2 = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    ventricle = ball(shape, (40, 40, 30), 7)  # CSF centred 30 mm below the tumour centre
    t1[ventricle], t2[ventricle] = -2.0, 2.0
    s = shape_summary(seg, brain, t1, t2, spacing)
    assert s["wt_cm3"] == pytest.approx((seg > 0).sum() / 1000)
    assert s["n_components"] == 1.0 and s["compactness"] == pytest.approx(1.0, abs=0.02)
    assert s["tc_wt"] == pytest.approx(np.isin(seg, (1, 4)).sum() / (seg > 0).sum())
    assert s["et_tc"] == pytest.approx((seg == 4).sum() / np.isin(seg, (1, 4)).sum())
    assert s["surface_mm"] == pytest.approx(35 - 20, abs=1.0)  # centre 20 mm from brain's
    assert s["ventricles_mm"] == pytest.approx(30 - 7, abs=1.0)
    assert ventricle_mask(t1, t2, np.full(shape, 40.0), seg > 0, spacing).sum() \
        == ventricle.sum()
    no_tumour = shape_summary(np.zeros(shape, np.uint8), brain, t1, t2, spacing)
    assert no_tumour["wt_cm3"] == 0 and np.isnan(no_tumour["surface_mm"])


def test_summary_over_subjects_leaves_undefined_values_out():
    rows = [{"a": 1.0, "b": np.nan}, {"a": 3.0, "b": 2.0}, {"a": 5.0, "b": np.nan}]
    s = summarize(rows)
    assert list(s) == ["a", "b"]
    assert s["a"] == {"n": 3, "mean": 3.0, "std": 2.0, "q05": 1.2, "q25": 2.0, "q50": 3.0,
                      "q75": 4.0, "q95": 4.8}
    assert s["b"]["n"] == 1 and s["b"]["mean"] == 2.0 and s["b"]["std"] is None


def test_subject_stats_names_every_statistic(tmp_path, params):
    params["extract"].update(image_size=32, min_brain_pixels=4)
    stats = subject_stats(load_subject(write_subject(tmp_path, "S-000")), params)
    for m in ("t1", "t1ce", "t2", "flair"):
        for tissue in ("brain", "necrosis", "edema", "enhancing"):
            assert f"intensity.{m}.{tissue}.q50" in stats
        assert {f"texture.{m}.{k}" for k in ("local_var", "gradient", "spectrum_slope")} \
            <= stats.keys()
    assert stats["shape.wt_cm3"] > 0 and stats["shape.n_components"] >= 1
    # the tumour is brighter by 80 in every modality than the brain around it
    assert stats["intensity.t1.edema.q50"] > stats["intensity.t1.brain.q50"] + 1


def test_subject_selection():
    folders = [REPO / f"s{i}" for i in range(1, 21)]
    assert select(folders, "1-10") == folders[:10]
    assert select(folders, "1-3,5") == [*folders[:3], folders[4]]
    assert select(folders, None) == folders
    for bad in ("0-3", "1-21", "one", ""):
        with pytest.raises(BrainsegError, match="--subjects"):
            select(folders, bad)


def test_a_bad_subject_stops_the_fit_naming_the_file_and_writes_nothing(tmp_path, params):
    params["extract"].update(image_size=32, min_brain_pixels=4)
    write_subject(tmp_path / "cohort", "A")
    (tmp_path / "cohort" / "A" / "A_t2.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(BrainsegError, match=r"A_t2\.nii\.gz"):
        run_cohort_stats(params=params, fit=tmp_path / "cohort", out=tmp_path / "s.json")
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob(".*"))
    (tmp_path / "bad.json").write_text('{"format": 99}')
    with pytest.raises(BrainsegError, match=r"bad\.json"):
        read_summary(tmp_path / "bad.json")


@needs_brats18
def test_fit_cli_on_the_real_tune_half(tmp_path):
    """`brainseg cohort-stats --fit` on subjects 1-2 of the 20 real ones: a summary with
    its provenance; the others listed as held out."""
    out = tmp_path / "real.json"
    result = subprocess.run(
        [sys.executable, "-m", "brainseg", "cohort-stats", "--params",
         str(REPO / "params.yaml"), "--fit", str(BRATS18), "--subjects", "1-2", "--out",
         str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    names = sorted(p.name for p in BRATS18.iterdir() if p.is_dir())
    prov = summary["provenance"]
    assert prov["source"] == "brats18" and prov["subjects"] == names[:2]
    assert prov["held_out"] == names[2:] and len(prov["manifest_sha256"]) == 64
    assert summary["n_subjects"] == 2 and summary["stats"]["shape.wt_cm3"]["n"] == 2
    # real enhancing tumour is bright in T1ce against normal brain
    stats = summary["stats"]
    assert stats["intensity.t1ce.enhancing.q50"]["mean"] > \
        stats["intensity.t1ce.brain.q50"]["mean"]


@needs_brats18
def test_committed_real_summary_is_fitted_on_the_tune_half():
    summary = read_summary(REPO / "workflow" / "real_stats" / "brats18_tune.json")
    names = sorted(p.name for p in BRATS18.iterdir() if p.is_dir())
    prov = summary["provenance"]
    assert prov["subjects"] == names[:10] and prov["held_out"] == names[10:]
    manifest = BRATS18 / "MANIFEST.tsv"
    from brainseg.io.hashing import file_digests

    assert prov["manifest_sha256"] == file_digests(manifest, "sha256")[0]


def test_bad_fit_folder_exits_non_zero_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "brainseg", "cohort-stats", "--params",
         str(REPO / "params.yaml"), "--fit", str(tmp_path / "nowhere"), "--out",
         str(tmp_path / "s.json")], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 1 and "nowhere: folder not found" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "s.json").exists()
