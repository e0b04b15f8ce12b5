"""Tests for the synthetic BraTS-like subject generator."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from dataclasses import asdict

import numpy as np
import pytest
from scipy import ndimage as ndi

from brainseg.data.modalities import MODALITIES
from brainseg.data.synthetic import BRATS_AFFINE, BRATS_SHAPE, SyntheticConfig, generate_subject
from brainseg.errors import BrainsegError
from brainseg.params import default_params

KEYS = (*MODALITIES, "seg", "affine")
N_COHORT = 8
HASH_SNIPPET = """
import hashlib
from brainseg.data.synthetic import generate_subject
s = generate_subject(0, 0)
h = hashlib.sha256()
for k in ("t1", "t1ce", "t2", "flair", "seg", "affine"):
    h.update(s[k].tobytes())
print(h.hexdigest())
"""
# Small single lesions keep the dedicated-config subjects fast.
SMALL = {"tumor_radius_mm": (14.0, 20.0), "n_lesions": (1, 1)}


def _digest(subject: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in KEYS:
        h.update(subject[key].tobytes())
    return h.hexdigest()


def _crop(s: dict[str, np.ndarray], margin: int) -> tuple[slice, ...]:
    """Bounding box of the whole tumour grown by ``margin`` voxels."""
    idx = np.argwhere(s["seg"] > 0)
    lo, hi = np.maximum(idx.min(0) - margin, 0), np.minimum(idx.max(0) + margin + 1, BRATS_SHAPE)
    return tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))


def _wm_preference(s: dict[str, np.ndarray]) -> tuple[float, float]:
    """Mean WM probability under the edema, and in the same-volume isotropic shell of the core."""
    box = _crop(s, 30)
    seg, wm, brain = s["seg"][box], s["wm"][box], s["t1"][box] > 0
    core, edema = np.isin(seg, (1, 4)), seg == 2
    dist = ndi.distance_transform_edt(~core)
    outside = brain & ~core
    shell = outside & (dist <= np.sort(dist[outside])[int(edema.sum())])
    return float(wm[edema].mean()), float(wm[shell].mean())


def _summary(s: dict[str, np.ndarray]) -> dict:
    """Label statistics of one subject (the cohort keeps these, not the volumes)."""
    box = _crop(s, 3)
    seg, brain = s["seg"][box], s["t1"][box] > 0
    whole, core, label1 = seg > 0, np.isin(seg, (1, 4)), seg == 1
    lab, n = ndi.label(whole)
    high_grade = bool((seg == 4).any())
    return {
        "wt_cm3": (s["seg"] > 0).sum() / 1000.0,  # 1 mm isotropic voxels
        "core_ratio": core.sum() / whole.sum(),
        "n_components": n,
        "every_lesion_has_core": set(np.unique(lab[core]).tolist()) == set(range(1, n + 1)),
        "core_wrapped": not (ndi.binary_dilation(core) & brain & ~whole).any(),
        "necrosis_in_rim": not high_grade or not (ndi.binary_dilation(label1) & ~core).any(),
        "high_grade": high_grade,
        "wm_preference": _wm_preference(s),
    }


@pytest.fixture(scope="module")
def cohort() -> tuple[list[dict[str, np.ndarray]], list[dict]]:
    """Summaries of N_COHORT default subjects of seed 0, and the full volumes of the first two."""
    full, stats = [], []
    for index in range(N_COHORT):
        s = generate_subject(0, index, with_tissue=True)
        stats.append(_summary(s))
        if index < 2:
            full.append({k: s[k] for k in KEYS})
    return full, stats


@pytest.fixture(scope="module")
def subjects(cohort) -> list[dict[str, np.ndarray]]:
    return cohort[0]


@pytest.fixture(scope="module")
def stats(cohort) -> list[dict]:
    return cohort[1]


def test_shapes_dtypes_affine(subjects):
    for s in subjects:
        assert set(s) == set(KEYS)
        for m in MODALITIES:
            assert s[m].shape == BRATS_SHAPE
            assert s[m].dtype == np.int16
            assert s[m].min() >= 0
        assert s["seg"].shape == BRATS_SHAPE and s["seg"].dtype == np.uint8
        assert set(np.unique(s["seg"]).tolist()) <= {0, 1, 2, 4}
        assert s["affine"].dtype == np.float64
        np.testing.assert_array_equal(s["affine"], BRATS_AFFINE)
    np.testing.assert_array_equal(
        BRATS_AFFINE, [[-1, 0, 0, 0], [0, -1, 0, 239], [0, 0, 1, 0], [0, 0, 0, 1]]
    )


def test_deterministic_across_processes(subjects):
    out = subprocess.run(
        [sys.executable, "-c", HASH_SNIPPET], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == _digest(subjects[0])


def test_different_index_differs(subjects):
    a, b = subjects
    for key in (*MODALITIES, "seg"):
        assert not np.array_equal(a[key], b[key])


def test_brain_region_and_tumor_inside(subjects):
    for s in subjects:
        brain = s["t1"] > 0
        for m in MODALITIES:
            np.testing.assert_array_equal(s[m] > 0, brain)  # same skull-stripped support
        assert 0.9e6 < brain.sum() < 2.0e6  # adult brain volume in mm^3
        assert (s["seg"] > 0).any()
        assert not (s["seg"][~brain]).any()
        z = np.nonzero(brain.any(axis=(0, 1)))[0]
        assert z[0] <= 20 and z[-1] >= 125  # brain fills most of the axial extent


def test_tumor_nesting_per_lesion(stats):
    for st in stats:
        assert st["every_lesion_has_core"]  # no lesion is edema alone
        assert st["core_wrapped"]  # every core voxel's brain neighbours are tumour
        assert st["necrosis_in_rim"]  # high grade: necrosis only touches the core
        assert 0.2 <= st["core_ratio"] <= 0.8


def test_volumes_spread_like_brats(stats):
    volumes = [st["wt_cm3"] for st in stats]
    assert all(5.0 <= v <= 300.0 for v in volumes), volumes
    assert max(volumes) / min(volumes) > 3.0, volumes


def test_multiple_lesions_and_grades(stats):
    assert any(st["n_components"] > 1 for st in stats)  # default n_lesions = (1, 3)
    assert any(st["n_components"] == 1 for st in stats)  # most subjects have one lesion
    grades = [st["high_grade"] for st in stats]
    assert any(grades) and not all(grades)  # default lower_grade_fraction = 0.25


def test_edema_follows_white_matter(stats):
    for st in stats:
        edema_wm, shell_wm = st["wm_preference"]
        assert edema_wm > shell_wm + 0.05, st["wm_preference"]


def test_edema_wm_bias_zero_is_isotropic():
    s = generate_subject(0, 3, SyntheticConfig(edema_wm_bias=0.0), with_tissue=True)
    edema_wm, shell_wm = _wm_preference(s)
    assert abs(edema_wm - shell_wm) < 0.1


def test_contrasts(subjects):
    for s in subjects:
        seg, brain = s["seg"], s["t1"] > 0
        normal = brain & ~ndi.binary_dilation(seg > 0, iterations=3)
        t1 = s["t1"].astype(np.float64)
        wm = normal & (t1 >= np.percentile(t1[normal], 75))
        csf = normal & (t1 <= np.percentile(t1[normal], 5))
        flair, t2 = (s[m].astype(np.float64) for m in ("flair", "t2"))
        assert flair[seg == 2].mean() > 1.2 * flair[wm].mean()
        assert t2[csf].mean() > 1.5 * t2[wm].mean()
        assert t1[np.isin(seg, (1, 4))].mean() < t1[wm].mean()  # tumor hypo-intense on T1
        assert 30 < np.median(t1[brain]) < 1000


@pytest.fixture(scope="module")
def graded() -> dict[float, list[dict[str, np.ndarray]]]:
    """One single-lesion subject each with lower_grade_fraction 1.0 and 0.0."""
    return {
        frac: [generate_subject(1, 0, SyntheticConfig(lower_grade_fraction=frac, **SMALL))]
        for frac in (1.0, 0.0)
    }


def test_lower_grade_has_no_enhancement(graded):
    for s in graded[1.0]:
        seg = s["seg"]
        assert not (seg == 4).any() and (seg == 1).any() and (seg == 2).any()
        assert ndi.label(seg > 0)[1] == 1  # n_lesions = (1, 1)
        normal = (s["t1"] > 0) & ~ndi.binary_dilation(seg > 0, iterations=3)
        t1 = s["t1"].astype(np.float64)
        wm = normal & (t1 >= np.percentile(t1[normal], 75))
        core = seg == 1
        t1ce, t2, flair = (s[m].astype(np.float64) for m in ("t1ce", "t2", "flair"))
        assert t1ce[core].mean() < 0.8 * t1ce[wm].mean()  # dark on T1ce: no enhancement
        assert t2[core].mean() > 1.5 * t2[wm].mean()
        assert flair[core].mean() > 1.2 * flair[wm].mean()


def test_high_grade_enhances(graded):
    for s in graded[0.0]:
        seg = s["seg"]
        assert (seg == 4).any() and (seg == 2).any()
        if (seg == 1).any():
            t1ce = s["t1ce"].astype(np.float64)
            assert t1ce[seg == 4].mean() > 1.5 * t1ce[seg == 1].mean()


def _deep(s: dict[str, np.ndarray]) -> np.ndarray:
    """Brain voxels of a 2 mm lattice more than 15 mm from the brain border."""
    return ndi.distance_transform_edt(s["t1"][::2, ::2, ::2] > 0) * 2.0 > 15.0


def _deep_csf_centroid(s: dict[str, np.ndarray]) -> np.ndarray:
    """Centroid (1 mm voxels) of the deep CSF (mostly the lateral ventricles)."""
    deep = (s["csf"][::2, ::2, ::2] > 0.5) & _deep(s)
    return np.array(ndi.center_of_mass(deep)) * 2.0


def test_mass_effect_pushes_tissue():
    cfg = {"tumor_radius_mm": (30.0, 30.0), "n_lesions": (1, 1), "lower_grade_fraction": 0.0}
    on = generate_subject(7, 0, SyntheticConfig(mass_effect_mm=10.0, **cfg), with_tissue=True)
    off = generate_subject(7, 0, SyntheticConfig(mass_effect_mm=0.0, **cfg), with_tissue=True)
    np.testing.assert_array_equal(on["t1"] > 0, off["t1"] > 0)  # the skull does not move
    whole = off["seg"] > 0
    near = ndi.binary_dilation(whole, iterations=15) & ~ndi.binary_dilation(whole, iterations=3)
    assert np.abs(on["wm"] - off["wm"])[near].mean() > 0.05  # tissue around the tumour moved
    tumour = np.array(ndi.center_of_mass(on["seg"] > 0))
    v_on, v_off = _deep_csf_centroid(on), _deep_csf_centroid(off)
    away = (v_off - tumour) / np.linalg.norm(v_off - tumour)
    assert (v_on - v_off) @ away > 0.5  # ventricles pushed away from the tumour (mm)
    counts_on, counts_off = (np.bincount(s["seg"].ravel(), minlength=5) for s in (on, off))
    for label in (1, 2, 4):
        assert 0.5 < (counts_on[label] + 1) / (counts_off[label] + 1) < 2.0


def test_ventricle_scale_enlarges_csf():
    small, large = (
        generate_subject(4, 0, SyntheticConfig(ventricle_scale=(v, v), **SMALL), with_tissue=True)
        for v in (0.7, 1.5)
    )
    deep = _deep(small)
    sub = (slice(None, None, 2),) * 3
    assert large["csf"][sub][deep].sum() > 1.5 * small["csf"][sub][deep].sum()


def test_domain_randomization(subjects):
    cfg = SyntheticConfig(domain_randomization=True)
    a, b = generate_subject(0, 0, cfg), generate_subject(0, 0, cfg)
    assert _digest(a) == _digest(b)  # deterministic
    ref = subjects[0]
    np.testing.assert_array_equal(a["seg"], ref["seg"])  # labels drawn before intensities
    for m in MODALITIES:
        np.testing.assert_array_equal(a[m] > 0, ref[m] > 0)  # same brain, 0 outside
        assert not np.array_equal(a[m], ref[m])


# The realism knobs (all off by default) set far from their defaults, on one small lesion.
REALISM = {"edema_falloff": 0.9, "tumor_heterogeneity": 0.3, "necrosis_t1_contrast": 0.4,
           "enhancement_contrast": 0.5, "texture": 0.15}


@pytest.fixture(scope="module")
def realism_pair() -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A high-grade single-lesion subject with the defaults and with REALISM."""
    base = {"lower_grade_fraction": 0.0, "necrosis_probability": 1.0, **SMALL}
    return (generate_subject(1, 0, SyntheticConfig(**base)),
            generate_subject(1, 0, SyntheticConfig(**base, **REALISM)))


def test_realism_knobs_change_intensities_only(realism_pair):
    plain, real = realism_pair
    again = generate_subject(1, 0, SyntheticConfig(
        lower_grade_fraction=0.0, necrosis_probability=1.0, **SMALL, **REALISM))
    assert _digest(again) == _digest(real)  # deterministic per (seed, index)
    np.testing.assert_array_equal(real["seg"], plain["seg"])  # labels drawn before intensities
    for m in MODALITIES:
        assert real[m].dtype == np.int16
        np.testing.assert_array_equal(real[m] > 0, plain[m] > 0)  # same brain, 0 outside
        assert not np.array_equal(real[m], plain[m])


def _outer_edema(seg: np.ndarray) -> np.ndarray:
    """Edema voxels within 2 voxels of the whole tumour's outer border."""
    whole = seg > 0
    return (seg == 2) & ~ndi.binary_erosion(whole, iterations=2)


def _normal_wm(s: dict[str, np.ndarray]) -> np.ndarray:
    seg, t1 = s["seg"], s["t1"].astype(np.float64)
    normal = (t1 > 0) & ~ndi.binary_dilation(seg > 0, iterations=3)
    return normal & (t1 >= np.percentile(t1[normal], 75))


def test_edema_falloff_fades_the_outer_edema_toward_normal_tissue(realism_pair):
    plain, real = realism_pair
    outer, inner = _outer_edema(plain["seg"]), (plain["seg"] == 2) & ~_outer_edema(plain["seg"])

    def contrast(s, where):  # T2 edema over normal WM
        t2 = s["t2"].astype(np.float64)
        return t2[where].mean() / t2[_normal_wm(s)].mean()

    assert contrast(real, outer) < contrast(plain, outer) - 0.3
    assert contrast(real, outer) < contrast(real, inner)  # brightest near the core


def test_necrosis_t1_contrast_brings_necrosis_toward_white_matter(realism_pair):
    plain, real = realism_pair
    necrosis = plain["seg"] == 1
    assert necrosis.sum() > 100

    def ratio(s):
        t1ce = s["t1ce"].astype(np.float64)
        return t1ce[necrosis].mean() / t1ce[_normal_wm(s)].mean()

    assert ratio(plain) < 0.6 and ratio(real) > ratio(plain) + 0.2


def test_enhancement_contrast_dims_the_enhancing_rim_on_t1ce_only(realism_pair):
    plain, real = realism_pair
    enhancing = plain["seg"] == 4

    def ratio(s, m):
        img = s[m].astype(np.float64)
        return img[enhancing].mean() / img[_normal_wm(s)].mean()

    assert ratio(real, "t1ce") < ratio(plain, "t1ce") - 0.08
    assert abs(ratio(real, "t2") - ratio(plain, "t2")) < 0.15  # other modalities: texture only


def test_texture_adds_fine_structure(realism_pair):
    plain, real = realism_pair

    def local_variance(s):  # of T1 in deep normal brain, 3 x 3 x 3
        t1 = s["t1"].astype(np.float64)
        mask = ndi.binary_erosion(t1 > 0, iterations=8) & ~ndi.binary_dilation(
            s["seg"] > 0, iterations=3)
        mean = ndi.uniform_filter(t1, 3)
        var = ndi.uniform_filter(t1**2, 3) - mean**2
        return var[mask].mean() / t1[mask].mean() ** 2

    assert local_variance(real) > 1.5 * local_variance(plain)


def test_list_pairs_accepted():
    cfg = SyntheticConfig(tumor_radius_mm=[13.0, 38.0], n_lesions=[1, 3], ventricle_scale=[1, 1])
    assert cfg.tumor_radius_mm == (13.0, 38.0) and cfg.n_lesions == (1, 3)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tumor_radius_mm": (30.0, 10.0)}, "tumor_radius_mm"),
        ({"tumor_radius_mm": (-1.0, 10.0)}, "tumor_radius_mm"),
        ({"tumor_radius_mm": (10.0,)}, "tumor_radius_mm"),
        ({"deformation_mm": -1.0}, "deformation_mm"),
        ({"bias_field": -0.1}, "bias_field"),
        ({"noise": -0.01}, "noise"),
        ({"core_fraction": (0.5, 1.2)}, "core_fraction"),
        ({"necrosis_probability": 1.5}, "necrosis_probability"),
        ({"n_lesions": (0, 2)}, "n_lesions"),
        ({"n_lesions": (1.5, 2)}, "n_lesions"),
        ({"n_lesions": (3, 1)}, "n_lesions"),
        ({"edema_wm_bias": -1.0}, "edema_wm_bias"),
        ({"mass_effect_mm": -2.0}, "mass_effect_mm"),
        ({"mass_effect_mm": "big"}, "mass_effect_mm"),
        ({"lower_grade_fraction": 1.5}, "lower_grade_fraction"),
        ({"ventricle_scale": (0.2, 1.0)}, "ventricle_scale"),
        ({"ventricle_scale": (1.5, 1.0)}, "ventricle_scale"),
        ({"domain_randomization": 1}, "domain_randomization"),
        ({"edema_falloff": 1.2}, "edema_falloff"),
        ({"tumor_heterogeneity": -0.1}, "tumor_heterogeneity"),
        ({"necrosis_t1_contrast": 2.0}, "necrosis_t1_contrast"),
        ({"enhancement_contrast": 0.1}, "enhancement_contrast"),
        ({"texture": 0.9}, "texture"),
    ],
)
def test_invalid_config(kwargs, field):
    with pytest.raises(BrainsegError, match=f"'download.synthetic.{field}"):
        SyntheticConfig(**kwargs)


def test_config_defaults_are_the_schema_defaults():
    assert asdict(SyntheticConfig()) == {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in default_params()["download"]["synthetic"].items()}


def test_invalid_seed():
    with pytest.raises(ValueError, match="seed"):
        generate_subject(-1, 0)


def test_templates_equal_nilearns_loaders():
    """The MNI152 templates read from nilearn's files equal what its loaders return."""
    from nilearn import datasets

    from brainseg.data.synthetic import mni

    ours = mni.templates()
    for array, name in zip(ours, ("brain_mask", "gm_template", "wm_template"), strict=True):
        expected = np.asarray(getattr(datasets, f"load_mni152_{name}")(resolution=1).dataobj,
                              np.float32)
        assert array.dtype == np.float32
        np.testing.assert_array_equal(array, expected)
