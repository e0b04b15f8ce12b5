"""Tests for the synthetic BraTS-like subject generator."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage as ndi

from brainseg.data.synthetic import (
    BRATS_AFFINE,
    BRATS_SHAPE,
    MODALITIES,
    SyntheticConfig,
    generate_subject,
)

KEYS = (*MODALITIES, "seg", "affine")
HASH_SNIPPET = """
import hashlib
from brainseg.data.synthetic import generate_subject
s = generate_subject(0, 0)
h = hashlib.sha256()
for k in ("t1", "t1ce", "t2", "flair", "seg", "affine"):
    h.update(s[k].tobytes())
print(h.hexdigest())
"""


def _digest(subject: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in KEYS:
        h.update(subject[key].tobytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def subjects() -> list[dict[str, np.ndarray]]:
    return [generate_subject(0, 0), generate_subject(0, 1)]


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


def test_tumor_nesting_and_volume(subjects):
    for s in subjects:
        seg = s["seg"]
        whole, core, necrosis = seg > 0, np.isin(seg, (1, 4)), seg == 1
        assert core.any() and (seg == 2).any()
        lo_w, hi_w = np.argwhere(whole).min(0), np.argwhere(whole).max(0)
        lo_c, hi_c = np.argwhere(core).min(0), np.argwhere(core).max(0)
        assert np.all(lo_w <= lo_c) and np.all(hi_c <= hi_w)
        assert 0.2 <= core.sum() / whole.sum() <= 0.8
        assert not (ndi.binary_dilation(necrosis) & ~core).any()  # necrosis inside the rim
        shell = ndi.binary_dilation(core) & ~core & (s["t1"] > 0)
        assert (seg[shell] == 2).mean() > 0.8  # core mostly wrapped in edema
        assert 5.0 <= whole.sum() / 1000.0 <= 200.0  # cm^3, 1 mm isotropic voxels


def test_contrasts(subjects):
    for s in subjects:
        seg, brain = s["seg"], s["t1"] > 0
        normal = brain & ~ndi.binary_dilation(seg > 0, iterations=3)
        t1 = s["t1"].astype(np.float64)
        wm = normal & (t1 >= np.percentile(t1[normal], 75))
        csf = normal & (t1 <= np.percentile(t1[normal], 5))
        flair, t2, t1ce = (s[m].astype(np.float64) for m in ("flair", "t2", "t1ce"))
        assert flair[seg == 2].mean() > 1.2 * flair[wm].mean()
        assert t2[csf].mean() > 1.5 * t2[wm].mean()
        assert t1[np.isin(seg, (1, 4))].mean() < t1[wm].mean()  # tumor hypo-intense on T1
        assert 30 < np.median(t1[brain]) < 1000
    s = subjects[0]
    assert (s["seg"] == 1).any() and (s["seg"] == 4).any()
    t1ce = s["t1ce"].astype(np.float64)
    assert t1ce[s["seg"] == 4].mean() > 1.5 * t1ce[s["seg"] == 1].mean()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"tumor_radius_mm": (30.0, 10.0)}, "tumor_radius_mm"),
        ({"tumor_radius_mm": (-1.0, 10.0)}, "tumor_radius_mm"),
        ({"deformation_mm": -1.0}, "deformation_mm"),
        ({"bias_field": -0.1}, "bias_field"),
        ({"noise": -0.01}, "noise"),
        ({"core_fraction": (0.5, 1.2)}, "core_fraction"),
        ({"necrosis_probability": 1.5}, "necrosis_probability"),
    ],
)
def test_invalid_config(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SyntheticConfig(**kwargs)


def test_invalid_seed():
    with pytest.raises(ValueError, match="seed"):
        generate_subject(-1, 0)
