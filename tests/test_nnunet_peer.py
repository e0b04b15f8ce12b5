"""The nnU-Net peer of the benchmarks: dataset conversion, labels back, folds, budget, plans.

These need neither nnU-Net nor real data (the benchmark itself does: `make bench-peers-real`).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from benchmarks import bench_peers_real, nnunet_peer


def _subject(raw, name, seg):
    folder = raw / name
    folder.mkdir(parents=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    for modality in nnunet_peer.MODALITIES:
        nib.save(nib.Nifti1Image(np.ones(seg.shape, np.float32), affine),
                 folder / f"{name}_{modality}.nii.gz")
    nib.save(nib.Nifti1Image(seg.astype(np.uint8), affine), folder / f"{name}_seg.nii.gz")


def test_region_conversion_follows_nnunet_brats_and_maps_back(tmp_path):
    seg = np.zeros((4, 4, 3), np.uint8)
    seg[0], seg[1], seg[2] = 1, 2, 4  # necrosis, edema, enhancing
    _subject(tmp_path / "raw", "S1", seg)
    folder = nnunet_peer.to_raw(tmp_path / "raw", tmp_path / "nn", "Dataset988_X", "regions")
    labels = np.asarray(nib.load(folder / "labelsTr" / "S1.nii.gz").dataobj)
    # nnU-Net's BraTS conversion: edema 1, necrosis 2, enhancing 3
    assert labels[0].max() == 2 and labels[1].max() == 1 and labels[2].max() == 3
    assert labels[3].max() == 0
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["regions_class_order"] == [1, 2, 3]
    assert meta["labels"]["whole tumor"] == [1, 2, 3] and meta["labels"]["tumor core"] == [2, 3]
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        f"S1_{k:04d}.nii.gz" for k in range(4)]
    np.testing.assert_array_equal(nnunet_peer.to_brats(labels), seg)


def test_a_raw_folder_without_labels_is_refused(tmp_path):
    (tmp_path / "raw" / "S1").mkdir(parents=True)
    with pytest.raises(SystemExit, match=r"no <subject>/<subject>_seg\.nii\.gz"):
        nnunet_peer.to_raw(tmp_path / "raw", tmp_path / "nn", "Dataset988_X")


def test_our_folds_become_nnunet_splits():
    splits = pd.DataFrame({"subject": ["a", "b", "c", "d"], "fold": [0, 1, 0, 1]})
    folds = bench_peers_real.nnunet_folds(splits)
    assert folds == [{"train": ["b", "d"], "val": ["a", "c"]},
                     {"train": ["a", "c"], "val": ["b", "d"]}]


@pytest.mark.parametrize(("seconds", "expected"), [
    (400.0, (3, 1)),       # (400 - 100) / 100 = 3 iterations: 3 epochs of one
    (100.0, (1, 1)),       # less than the start-up: still one iteration
    (2100.0, (2, 10)),     # 20 iterations: epochs of ITERATIONS_PER_EPOCH
])
def test_budget_fills_the_training_time(seconds, expected):
    assert bench_peers_real.budget(seconds, per_iteration=100.0, startup=100.0) == expected


def test_trainer_source_is_valid_python_with_the_budget(tmp_path):
    name = nnunet_peer.write_trainer(tmp_path, epochs=3, iterations=7)
    source = (tmp_path / f"{name}.py").read_text()
    tree = ast.parse(source)
    assert [n.name for n in tree.body if isinstance(n, ast.ClassDef)] == [name]
    assert "self.num_epochs = 3" in source and "self.num_iterations_per_epoch = 7" in source


def test_plans_copy_changes_only_the_2d_batch_size(tmp_path):
    plans = {"plans_name": "nnUNetPlans",
             "configurations": {"2d": {"batch_size": 105, "patch_size": [192, 160]}}}
    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(plans))
    assert nnunet_peer.write_plans(tmp_path, None) == "nnUNetPlans"
    name = nnunet_peer.write_plans(tmp_path, 16)
    copy = json.loads((tmp_path / f"{name}.json").read_text())
    assert copy["configurations"]["2d"] == {"batch_size": 16, "patch_size": [192, 160]}
    assert copy["plans_name"] == name == "nnUNetPlans_bs16"
    assert json.loads((tmp_path / "nnUNetPlans.json").read_text()) == plans


def test_measure_reports_time_and_memory_and_raises_on_failure():
    done = nnunet_peer.measure([sys.executable, "-c", "x = bytearray(64 << 20)"])
    assert done.seconds > 0 and done.max_rss_mib >= 64
    with pytest.raises(subprocess.CalledProcessError):
        nnunet_peer.measure([sys.executable, "-c", "raise SystemExit(3)"])


def test_monai_slices_fill_the_budget_from_two_probes():
    # 0.1 s per slice, 5 s of overhead per validated epoch: 10 epochs, 5 validations
    probes = {64: 5 + 6.4, 192: 5 + 19.2}
    slices, per_slice, overhead = bench_peers_real.monai_slices(525.0, 10, 5, probes, 16)
    assert per_slice == pytest.approx(0.1) and overhead == pytest.approx(5.0)
    assert slices == 496  # (525 - 25) / (10 x 0.1) = 500, to a multiple of the batch
    assert bench_peers_real.monai_slices(10.0, 10, 5, probes, 16)[0] == 16  # at least a batch


def test_monai_params_change_only_the_network_and_its_slices():
    params = yaml_preset()
    out = bench_peers_real.monai_params(params, 256)
    assert out["train"]["model"]["arch"] == "monai_basicunet"
    assert out["train"]["slices_per_epoch"] == 256
    assert out["train"]["epochs"] == params["train"]["epochs"]
    assert out["train"]["model"]["deep_supervision"] == 0
    assert params["train"]["model"]["arch"] == "unet"  # the preset itself is untouched
    for key in ("optimizer", "schedule", "augment", "loss", "batch_size"):
        assert out["train"][key] == params["train"][key]


def test_reuse_ours_refuses_other_folds():
    recorded = json.loads(bench_peers_real.LATEST.read_text())["sections"].get("peers_real")
    folds = [4] if recorded is None or recorded["folds"] != [4] else [3]
    with pytest.raises(SystemExit, match="--reuse-ours"):
        bench_peers_real.recorded_ours(folds)


def yaml_preset():
    import yaml

    from benchmarks import cv_real

    return yaml.safe_load(cv_real.PRESET.read_text())
