"""A 3D U-Net (`train.model.dims: 3`) through the command line: params, the data stages,
train, postprocess, evaluate, export and predict, on a tiny cohort."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from tests.conftest import REPO, write_subject

# The smoke params made 3D: patch 32^3, base 4, depth 2, one epoch of 4 patches
SETS_3D = ("train.model.dims=3", "train.patch_size=[32, 32, 32]", "train.model.base_channels=4",
           "train.model.depth=2", "train.epochs=1", "train.batch_size=2",
           "train.slices_per_epoch=4", "train.augment.elastic.p=0")


def brainseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "brainseg", *args], cwd=cwd,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run_3d(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli3d")
    for i in range(5):
        write_subject(root / "src", f"TINY-{i:03d}", shape=(36, 32, 20), seed=i)
    sets = [*SETS_3D, "download.source=local", f"download.path={root / 'src'}"]
    brainseg("params", "--base", str(REPO / "tests" / "params-smoke.yaml"),
             *(a for s in sets for a in ("--set", s)), "--out", "params.yaml", cwd=root)
    steps = [
        ("download", "--out-dir", "data/raw"),
        ("extract", "--raw-dir", "data/raw", "--out-dir", "data/extracted"),
        ("normalize", "--in-dir", "data/extracted", "--out-dir", "data/slices"),
        ("split", "--manifest", "data/raw/manifest.csv", "--out", "data/splits.csv"),
        ("train", "--slices-dir", "data/slices", "--splits", "data/splits.csv",
         "--model-out", "models/model.pt", "--history-out", "reports/train_history.csv",
         "--run-info-out", "models/mlflow_run.json", "--threads", "1"),
        ("postprocess", "--model", "models/model.pt", "--splits", "data/splits.csv",
         "--raw-dir", "data/raw", "--settings-out", "reports/postprocess.json",
         "--table-out", "reports/postprocess.csv", "--cv-out", "reports/postprocess_cv.json",
         "--run-info", "models/mlflow_run.json", "--threads", "1"),
        ("evaluate", "--model", "models/model.pt", "--splits", "data/splits.csv",
         "--raw-dir", "data/raw", "--pred-dir", "data/predictions",
         "--per-subject-out", "reports/per_subject.csv", "--metrics-out",
         "reports/metrics.json", "--run-info", "models/mlflow_run.json",
         "--postprocess", "reports/postprocess.json", "--threads", "1"),
    ]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    for command, *args in steps:
        extra = () if command in ("split", "extract", "normalize", "download") else (
            "--tracking-uri", uri)
        brainseg(command, "--params", "params.yaml", *args, *extra, cwd=root)
    brainseg("export", "--model", "models/model.pt", "--format", "onnx", "--out",
             "models/model.onnx", cwd=root)
    return root


def test_the_3d_checkpoint_records_dims_and_its_window(run_3d):
    ckpt = torch.load(run_3d / "models" / "model.pt", weights_only=True)
    assert ckpt["config"]["model"]["dims"] == 3
    assert ckpt["config"]["patch"] == {"size": [32, 32, 32], "overlap": 0.5}
    assert ckpt["state_dict"]["head.weight"].dim() == 5
    metrics = json.loads((run_3d / "reports" / "metrics.json").read_text())
    assert metrics["test"]["n_subjects"] == 1
    assert 0 <= metrics["test"]["dice"]["WT"] <= 1


@pytest.mark.parametrize("model", ["models/model.pt", "models/model.onnx"])
def test_predict_writes_the_input_grid_in_any_orientation(run_3d, model, tmp_path):
    subject = run_3d / "src" / "TINY-004"
    out = tmp_path / "seg.nii.gz"
    brainseg("predict", "--model", str(run_3d / model), "--input", str(subject), "--output",
             str(out), "--threads", "1", cwd=tmp_path)
    source = nib.load(subject / "TINY-004_t1.nii.gz")
    pred = nib.load(out)
    assert pred.shape == source.shape and np.allclose(pred.affine, source.affine)
    labels = np.asarray(pred.dataobj)
    assert set(np.unique(labels)) <= {0, 1, 2, 4}
    # the same scan stored in another orientation (x mirrored, affine to match): the same
    # segmentation of the same anatomy, on that file's own grid
    flipped = tmp_path / "flipped"
    flipped.mkdir()
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    mirror[0, 3] = source.shape[0] - 1
    for path in sorted(subject.glob("*.nii.gz")):
        img = nib.load(path)
        nib.save(nib.Nifti1Image(np.asarray(img.dataobj)[::-1], img.affine @ mirror),
                 flipped / path.name)
    out2 = tmp_path / "seg_flipped.nii.gz"
    brainseg("predict", "--model", str(run_3d / model), "--input", str(flipped), "--output",
             str(out2), "--threads", "1", cwd=tmp_path)
    again = nib.load(out2)
    assert again.shape == source.shape and np.allclose(again.affine, source.affine @ mirror)
    assert np.array_equal(np.asarray(again.dataobj)[::-1], labels)


def test_predict_takes_another_overlap_for_a_3d_model_only(run_3d, tmp_path):
    subject = run_3d / "src" / "TINY-004"
    brainseg("predict", "--model", str(run_3d / "models" / "model.pt"), "--input",
             str(subject), "--output", str(tmp_path / "seg.nii.gz"), "--overlap", "0",
             "--threads", "1", cwd=tmp_path)
    assert nib.load(tmp_path / "seg.nii.gz").shape == (36, 32, 20)
    from brainseg.errors import BrainsegError
    from brainseg.evaluation.predict import with_overlap

    config = torch.load(run_3d / "models" / "model.pt", weights_only=True)["config"]
    assert with_overlap(config, 0.25, "m.pt")["patch"] == {"size": [32, 32, 32],
                                                           "overlap": 0.25}
    assert config["patch"]["overlap"] == 0.5  # a copy
    two_d = {**config, "model": {**config["model"], "dims": 2}}
    with pytest.raises(BrainsegError, match=r"--overlap: m\.pt is a 2D model"):
        with_overlap(two_d, 0.25, "m.pt")


def test_the_figures_of_a_3d_run_show_its_patches(run_3d):
    """The figures stage on a 3D run: its augmentation figure is the 3D one (patches in an
    axial and a coronal view), beside the curves and the overlays of its predictions."""
    brainseg("figures", "--params", "params.yaml", "--history", "reports/train_history.csv",
             "--per-subject", "reports/per_subject.csv", "--raw-dir", "data/raw",
             "--pred-dir", "data/predictions", "--slices-dir", "data/slices", "--splits",
             "data/splits.csv", "--out-dir", "reports/figures", "--run-info",
             "models/mlflow_run.json", "--tracking-uri", f"sqlite:///{run_3d / 'mlflow.db'}",
             cwd=run_3d)
    figures = run_3d / "reports" / "figures"
    for name in ("learning_curves.png", "dice_boxplot.png", "augmentation.png"):
        assert (figures / name).stat().st_size > 0, name
    # the 3D figure (tumour-centred patches, axial and coronal), drawn from the training split
    import yaml

    from brainseg.data.split import subjects_in_split
    from brainseg.reporting.augmentation import plot_augmentations_3d

    params = yaml.safe_load((run_3d / "params.yaml").read_text())
    train = params["train"]
    folders = [run_3d / "data" / "slices" / s
               for s in subjects_in_split(run_3d / "data" / "splits.csv", "train")]
    plot_augmentations_3d(folders, train["augment"], train["patch_size"],
                          params["base"]["seed"], run_3d / "want.png", params["figures"]["dpi"])
    assert (figures / "augmentation.png").read_bytes() == (run_3d / "want.png").read_bytes()
