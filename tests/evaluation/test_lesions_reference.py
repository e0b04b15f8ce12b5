"""Lesion-wise metrics (rules brats2025) against the official `brats-evaluation` package.

The package runs in its own venv (`make brats-eval-install`: .venv-brats-eval, from
tests/reference/requirements-brats-eval.lock: it needs numpy < 2.3 and pandas < 3), in a
subprocess, through tests/reference/brats_eval_driver.py, on the very NIfTI files that we
score here. Cases: random multi-lesion label maps (touching and merging lesions, split and
missed lesions, false blobs), empty masks, the real case of tests/data/real against a
prediction built from it, and a real prediction of the model against its BraTS 2018
reference (../shared). All on 1 mm voxels (see docs/conventions.md on the package and
anisotropic voxels).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from brainseg.data.labels import REGIONS
from brainseg.data.layouts import from_internal_labels
from brainseg.evaluation.lesions import NO_MATCH_HD95_MM, region_lesion_metrics
from brainseg.evaluation.metrics import region_metrics
from brainseg.io.nifti import load_nifti
from tests.conftest import REPO

REFERENCE = REPO / "tests" / "reference"
PYTHON = REPO / ".venv-brats-eval" / "bin" / "python"
REAL = REPO / "tests" / "data" / "real" / "TCGA-DU-7294" / "TCGA-DU-7294_seg.nii.gz"
MODEL_SUBJECT = "Brats18_TCIA02_606_1"
MODEL_PRED = REFERENCE / f"{MODEL_SUBJECT}_pred.nii.gz"
MODEL_REF = (REPO.parent / "shared" / "fixtures" / "brats18" / MODEL_SUBJECT
             / f"{MODEL_SUBJECT}_seg.nii.gz")
#: ours -> the package's key (per region of `evaluate_single_exam`)
KEYS = {"lesionwise_dice": "sq_dsc", "lesionwise_hd95": "sq_hd95", "lesionwise_nsd": "sq_nsd",
        "lesionwise_tp": "tp", "lesionwise_fp": "fp", "lesionwise_fn": "fn"}
TOLERANCE = {"lesionwise_dice": 1e-6, "lesionwise_hd95": 1e-3, "lesionwise_nsd": 1e-6,
             "lesionwise_tp": 0, "lesionwise_fp": 0, "lesionwise_fn": 0}


def reference_python() -> Path:
    """The reference venv's python; skip (fail under CI=true) when it is absent."""
    if not PYTHON.is_file():
        reason = f"reference venv absent ({PYTHON}): run `make brats-eval-install`"
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and {reason}")
        pytest.skip(reason)
    return PYTHON


def ball(shape, centre, radius) -> np.ndarray:
    grid = np.indices(shape)
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius ** 2


def lesion_map(rng: np.random.Generator, shape=(56, 56, 44)) -> np.ndarray:
    """BraTS labels: 3-5 tumours (edema 2, core 1, enhancing ring 4), some touching."""
    labels = np.zeros(shape, np.uint8)
    centre = rng.integers(12, np.array(shape) - 12)
    for i in range(int(rng.integers(3, 6))):
        radius = float(rng.uniform(3, 8))
        if i == 1:  # touching or merging with the first
            centre = centre + np.array([radius + rng.uniform(1, 5), 0, 0]).astype(int)
        elif i:
            centre = rng.integers(8, np.array(shape) - 8)
        edema, core = ball(shape, centre, radius), ball(shape, centre, 0.7 * radius)
        labels[edema & (labels == 0)] = 2
        labels[core] = 4
        labels[ball(shape, centre, 0.45 * radius)] = 1
    for _ in range(int(rng.integers(1, 4))):  # small enhancing blobs
        labels[ball(shape, rng.integers(4, np.array(shape) - 4), rng.uniform(1, 2))] = 4
    return labels


def perturbed(rng: np.random.Generator, ref: np.ndarray) -> np.ndarray:
    """A prediction: shifted, one label eroded, a slab cut, lesions missed, false blobs."""
    pred = np.roll(ref, tuple(rng.integers(-2, 3, size=3)), axis=(0, 1, 2))
    label = int(rng.choice([1, 2, 4]))
    pred[(pred == label) & ~ndimage.binary_erosion(pred == label)] = 2 if label != 2 else 0
    cut = int(rng.integers(10, ref.shape[0] - 10))
    pred[cut:cut + int(rng.integers(1, 3))] = 0
    components, n = ndimage.label(pred > 0)
    if n > 1:
        pred[components == int(rng.integers(1, n + 1))] = 0
    for _ in range(int(rng.integers(1, 4))):
        pred[ball(ref.shape, rng.integers(3, np.array(ref.shape) - 3),
                  rng.uniform(1, 4))] = int(rng.choice([2, 4]))
    return pred


def built_prediction(ref: np.ndarray) -> np.ndarray:
    """A prediction of the real case: shifted, core eroded, split by a slab, two false blobs."""
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    core = pred == 1
    pred[core & ~ndimage.binary_erosion(core, iterations=2)] = 2
    box = ndimage.find_objects((pred > 0).astype(np.uint8))[0]
    middle = (box[2].start + box[2].stop) // 2
    pred[:, :, middle:middle + 2] = 0
    pred[ball(ref.shape, (60, 180, 70), 5)] = 2
    pred[ball(ref.shape, (180, 60, 90), 2)] = 4
    return pred


def labels_of(path: Path) -> np.ndarray:
    return np.asarray(load_nifti(path, native=True)[0], dtype=np.uint8)


def write(path: Path, labels: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(from_internal_labels(labels, "brats2023"), np.eye(4)), path)
    return str(path)


def cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (prediction, reference), BraTS 2020 labels, 1 mm voxels."""
    out = {}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        ref = lesion_map(rng)
        out[f"random-{seed}"] = (perturbed(rng, ref), ref)
    ref = lesion_map(np.random.default_rng(10))
    out["empty-prediction"] = (np.zeros_like(ref), ref)
    out["empty-reference"] = (ref, np.zeros_like(ref))
    out["both-empty"] = (np.zeros_like(ref), np.zeros_like(ref))
    real = labels_of(REAL)
    out["real-built"] = (built_prediction(real), real)
    if MODEL_REF.is_file():
        out["real-model"] = (labels_of(MODEL_PRED), labels_of(MODEL_REF))
    return out


def package_value(value) -> float:
    """The package's value as ours: infinity (no match) is our NO_MATCH_HD95_MM, null NaN."""
    if value == "inf":
        return NO_MATCH_HD95_MM
    return float("nan") if value is None else float(value)


@pytest.fixture(scope="module")
def compared(tmp_path_factory) -> dict[str, tuple[dict, dict, dict]]:
    """name -> (our lesion-wise metrics, our whole-volume metrics, the package's output)."""
    python = reference_python()
    tmp = tmp_path_factory.mktemp("brats_eval")
    pairs, listing = cases(), []
    for name, (pred, ref) in pairs.items():
        listing.append({"name": name, "pred": write(tmp / f"{name}_pred.nii.gz", pred),
                        "ref": write(tmp / f"{name}_ref.nii.gz", ref)})
    (tmp / "cases.json").write_text(json.dumps(listing))
    subprocess.run([str(python), str(REFERENCE / "brats_eval_driver.py"),
                    str(tmp / "cases.json"), str(tmp / "out.json")],
                   check=True, capture_output=True, text=True, timeout=600)
    theirs = json.loads((tmp / "out.json").read_text())
    return {name: (region_lesion_metrics(pred, ref, (1.0, 1.0, 1.0)),
                   region_metrics(pred, ref, (1.0, 1.0, 1.0)), theirs[name])
            for name, (pred, ref) in pairs.items()}


def test_lesionwise_metrics_match_the_package(compared):
    for name, (ours, _, theirs) in compared.items():
        for region in REGIONS:
            for metric, key in KEYS.items():
                got, want = ours[region][metric], package_value(theirs[region.lower()][key])
                if math.isnan(want):
                    assert math.isnan(got), (name, region, metric, got)
                else:
                    assert got == pytest.approx(want, abs=TOLERANCE[metric]), (
                        name, region, metric, got, want)


def test_cases_cover_multi_lesion_matching(compared):
    """The random cases are not trivial: several lesions, false and missed ones."""
    counts = {k: sum(theirs[r.lower()][k] or 0 for _, _, theirs in compared.values()
                     for r in REGIONS) for k in ("tp", "fp", "fn")}
    assert min(counts.values()) >= 10, counts
    multi = [n for n, (ours, _, _) in compared.items() if ours["WT"]["lesionwise_tp"] >= 2]
    assert multi, "no case with two matched whole-tumour lesions"


def test_whole_volume_dice_and_hd95_match_the_package(compared):
    """Its global Dice and HD95 where both masks have voxels (1 mm voxels: its global
    metrics ignore the spacing)."""
    for name, (_, whole, theirs) in compared.items():
        for region in REGIONS:
            got = theirs[region.lower()]
            if got["global_bin_hd95"] in (None, "inf"):
                continue
            assert whole[region]["dice"] == pytest.approx(got["global_bin_dsc"], abs=1e-6), name
            assert whole[region]["hd95"] == pytest.approx(got["global_bin_hd95"], abs=1e-3), name


@pytest.mark.skipif(not MODEL_REF.is_file(), reason=f"BraTS 2018 fixture absent: {MODEL_REF}")
def test_the_real_model_prediction_is_compared(compared):
    assert "real-model" in compared
