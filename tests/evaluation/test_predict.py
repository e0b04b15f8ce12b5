"""`brainseg predict`: inputs by folder, files or batch; any orientation; labels as the input's."""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from brainseg.data.loading import load_subject
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_checkpoint, load_model, predict_volume
from brainseg.evaluation.predict import run_predict
from brainseg.models.unet import build_model
from tests.conftest import write_subject
from tests.evaluation.test_inference import MODEL

NAMES_2023 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f"}


def segment(model, inputs: list[Path], output: Path, **kwargs) -> list[Path]:
    """`run_predict` with the model (a path or an MLflow URI), inputs and output."""
    return run_predict(model=str(model), inputs=inputs, output=output, **kwargs)


def model_config(image_size: int) -> dict:
    return {"model": MODEL,
            "extract": {"image_size": image_size, "margin": 2, "min_brain_pixels": 4},
            "normalize": {"clip_percentiles": [0.5, 99.5]}}


def varied_model(image: np.ndarray, image_size: int = 32) -> tuple[torch.nn.Module, dict]:
    """Random fixed weights, with head biases set so that WT, TC and ET each cover part of
    the brain of `image` (4, x, y, z): the prediction then holds every label 0, 1, 2, 4."""
    torch.manual_seed(0)
    config = model_config(image_size)
    model = build_model(MODEL).eval()
    slices, _, brain, _ = extract_slices(image, None, image_size, 2, 4)
    normed, _ = normalize_slices(slices, brain, (0.5, 99.5))
    with torch.no_grad():
        logits = model(torch.from_numpy(normed.astype(np.float32)))
        inside = logits.permute(1, 0, 2, 3)[:, torch.from_numpy(brain)]
        cuts = [inside[c].quantile(q) for c, q in enumerate((0.3, 0.5, 0.7))]
        model.head.bias -= torch.stack(cuts)
    return model, config


def save_varied_checkpoint(path: Path, image: np.ndarray, image_size: int = 32) -> Path:
    """A checkpoint in the format `train` writes (state_dict + config)."""
    model, config = varied_model(image, image_size)
    torch.save({"state_dict": model.state_dict(), "config": config, "epoch": 1}, path)
    return path


def as_brats2023(src: Path, dst_root: Path, seg: bool = False) -> Path:
    """Copy a BraTS 2020-named subject folder with BraTS 2023 names (no label map by default)."""
    subject = src.name
    folder = dst_root / subject
    folder.mkdir(parents=True)
    for key, new in NAMES_2023.items():
        shutil.copyfile(src / f"{subject}_{key}.nii.gz", folder / f"{subject}-{new}.nii.gz")
    if seg:
        shutil.copyfile(src / f"{subject}_seg.nii.gz", folder / f"{subject}-seg.nii.gz")
    return folder


def read(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    img = nib.load(path)
    return np.asarray(img.dataobj), img


@pytest.fixture
def tiny(tmp_path):
    """A tiny BraTS 2020 subject and a checkpoint whose prediction holds every label."""
    folder = write_subject(tmp_path / "in20", "TINY-001", seed=1)
    ckpt = save_varied_checkpoint(tmp_path / "m.pt", load_subject(folder).image)
    return folder, ckpt


def test_folder_prediction_is_on_the_input_grid_with_brats2020_labels(tiny, tmp_path):
    folder, ckpt = tiny
    out = segment(ckpt, [folder], tmp_path / "out" / "pred.nii.gz")[0]
    labels, img = read(out)
    _, t1 = read(folder / "TINY-001_t1.nii.gz")
    assert img.shape == t1.shape and img.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(img.affine, t1.affine)
    for key in ("qform_code", "sform_code", "pixdim", "xyzt_units", "quatern_b", "srow_x"):
        np.testing.assert_array_equal(img.header[key], t1.header[key])
    assert img.header["cal_max"] == 0 and np.isnan(img.header["scl_slope"])  # raw labels
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}
    # the same numbers as the evaluate stage's path (no reorientation for BraTS axes)
    model, config = load_checkpoint(ckpt)
    np.testing.assert_array_equal(labels, predict_volume(model, config,
                                                         load_subject(folder).image, 0.5, 32))


def test_brats2023_names_without_label_map_give_2023_labels(tiny, tmp_path):
    folder, ckpt = tiny
    out20 = read(segment(ckpt, [folder], tmp_path / "p20.nii.gz")[0])[0]
    folder23 = as_brats2023(folder, tmp_path / "in23")
    assert not list(folder23.glob("*seg*"))
    labels23, img = read(segment(ckpt, [folder23], tmp_path / "p23.nii.gz")[0])
    assert img.get_data_dtype() == np.uint8 and (out20 == 4).any()
    assert set(np.unique(labels23).tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(labels23, np.where(out20 == 4, 3, out20))
    # four 2023-named files in any order are recognised by name
    files = [folder23 / f"TINY-001-{NAMES_2023[m]}.nii.gz" for m in ("flair", "t2", "t1", "t1ce")]
    shuffled = read(segment(ckpt, files, tmp_path / "p23f.nii.gz")[0])[0]
    np.testing.assert_array_equal(shuffled, labels23)


def test_four_unnamed_files_in_documented_order(tiny, tmp_path):
    folder, ckpt = tiny
    out20 = read(segment(ckpt, [folder], tmp_path / "p20.nii.gz")[0])[0]
    files = []
    for i, key in enumerate(MODALITIES):
        files.append(tmp_path / f"scan{i}.nii.gz")
        shutil.copyfile(folder / f"TINY-001_{key}.nii.gz", files[-1])
    plain = read(segment(ckpt, files, tmp_path / "plain.nii.gz")[0])[0]
    np.testing.assert_array_equal(plain, out20)
    as23 = read(segment(ckpt, files, tmp_path / "as23.nii.gz", layout="brats2023")[0])[0]
    np.testing.assert_array_equal(as23, np.where(out20 == 4, 3, out20))
    contradicting = [files[0], files[1], folder / "TINY-001_flair.nii.gz", files[3]]
    with pytest.raises(BrainsegError, match=r"TINY-001_flair\.nii\.gz: its name says flair but "
                       "file 3 of --input must be t2"):
        segment(ckpt, contradicting, tmp_path / "bad.nii.gz")
    assert not (tmp_path / "bad.nii.gz").exists()


def reorient_case(src: Path, dst: Path) -> Path:
    """Rewrite a subject's modalities (as `.nii`, no label map) with permuted and flipped
    axes and the affine of the same anatomy.

    New voxel (a, b, c) is old voxel (i, j, k) = (n0 - 1 - b, c, a); the new file stores
    its affine in the qform only (sform code 0) to check that both codes are kept.
    """
    dst.mkdir(parents=True)
    for path in sorted(src.glob("*_t*.nii.gz")) + sorted(src.glob("*_flair.nii.gz")):
        img = nib.load(path)
        data = np.asarray(img.dataobj)
        n0 = data.shape[0]
        new = np.ascontiguousarray(np.flip(np.transpose(data, (2, 0, 1)), axis=1))
        new_to_old = np.array([[0, -1, 0, n0 - 1], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1.0]])
        out = nib.Nifti1Image(new, img.affine @ new_to_old)
        out.set_qform(img.affine @ new_to_old, code=1)
        out.set_sform(None, code=0)
        nib.save(out, dst / path.name.replace(".nii.gz", ".nii"))  # uncompressed: faster
    return dst


def test_any_orientation_gives_the_same_segmentation_on_the_real_case(real_case, tmp_path):
    image = load_subject(real_case).image
    ckpt = save_varied_checkpoint(tmp_path / "m.pt", image, image_size=64)
    turned = reorient_case(real_case, tmp_path / "turned" / real_case.name)
    labels, img = read(segment(ckpt, [real_case], tmp_path / "a.nii.gz")[0])
    labels_t, img_t = read(segment(ckpt, [turned], tmp_path / "b.nii.gz")[0])
    _, ref = read(real_case / "TCGA-DU-7294_t1.nii.gz")
    _, ref_t = read(turned / "TCGA-DU-7294_t1.nii")
    assert nib.aff2axcodes(ref_t.affine) == ("S", "R", "P")
    assert img.shape == ref.shape == (240, 240, 155) and img_t.shape == ref_t.shape
    np.testing.assert_array_equal(img.affine, ref.affine)
    np.testing.assert_array_equal(img_t.affine, ref_t.affine)
    assert (int(img_t.header["qform_code"]), int(img_t.header["sform_code"])) == (1, 0)
    assert img.get_data_dtype() == img_t.get_data_dtype() == np.uint8
    assert set(np.unique(labels).tolist()) == {0, 1, 2, 4}
    np.testing.assert_array_equal(labels_t, np.flip(np.transpose(labels, (2, 0, 1)), axis=1))


def test_batch_writes_every_good_subject_and_names_the_broken_one(tiny, tmp_path):
    folder, ckpt = tiny
    root = tmp_path / "batch"
    shutil.copytree(folder, root / "TINY-001")
    write_subject(root, "TINY-002", seed=2)
    broken = write_subject(root, "TINY-003", seed=3)
    (broken / "TINY-003_flair.nii.gz").unlink()
    as_brats2023(write_subject(tmp_path / "tmp", "TINY-004", seed=4), root)
    with pytest.raises(BrainsegError, match=r"1 of 4 subjects failed .*: TINY-003$"):
        segment(ckpt, [root], tmp_path / "out")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["TINY-001_seg.nii.gz", "TINY-002_seg.nii.gz", "TINY-004_seg.nii.gz"]
    single = read(segment(ckpt, [folder], tmp_path / "one.nii.gz")[0])[0]
    np.testing.assert_array_equal(read(tmp_path / "out" / "TINY-001_seg.nii.gz")[0], single)
    assert 3 in read(tmp_path / "out" / "TINY-004_seg.nii.gz")[0]  # 2023 names, 2023 labels


def log_models(tmp_path: Path, image: np.ndarray, params: dict) -> tuple[str, str]:
    """Three models in a SQLite MLflow store (artifacts under tmp_path, the working folder):
    the config as MLmodel metadata only (`pt2` format), logged as `train` logs it (`pickle`
    format, config as attribute and metadata), and none; returns (tracking URI, run id)."""
    import mlflow
    import mlflow.pytorch

    from brainseg.training.mlflow_run import TrainingRun

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model, config = varied_model(image)
    example = np.zeros((2, 4, 32, 32), np.float32)
    with TrainingRun(uri, "predict", params, tmp_path) as run:
        run.log_model(model, config, "unet-pickle", example)
    with mlflow.start_run(experiment_id=run.experiment_id) as pt2_run:
        mlflow.pytorch.log_model(model, name="model", registered_model_name="unet-pt2",
                                 pip_requirements=["torch"], input_example=example,
                                 metadata={"brainseg_config": config})
    with mlflow.start_run(experiment_id=run.experiment_id):
        mlflow.pytorch.log_model(varied_model(image)[0], name="model",
                                 registered_model_name="unet-bare", pip_requirements=["torch"],
                                 input_example=example)
    return uri, pt2_run.info.run_id


def test_mlflow_models_predict_like_their_checkpoint(tiny, tmp_path, monkeypatch, params):
    folder, ckpt = tiny
    monkeypatch.chdir(tmp_path)
    uri, run_id = log_models(tmp_path, load_subject(folder).image, params)
    want = read(segment(ckpt, [folder], tmp_path / "ckpt.nii.gz")[0])[0]
    for ref in ("models:/unet-pt2/1", f"runs:/{run_id}/model"):
        got = read(segment(ref, [folder], tmp_path / "uri.nii.gz", tracking_uri=uri)[0])[0]
        np.testing.assert_array_equal(got, want)
    # as `train` logs it (pickle): the attribute holds the config; refused where pickle is not
    got = read(segment("models:/unet-pickle/1", [folder], tmp_path / "pk.nii.gz",
                           tracking_uri=uri)[0])[0]
    np.testing.assert_array_equal(got, want)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    with pytest.raises(BrainsegError, match="models:/unet-pickle/1: cannot load MLflow model: "
                       "Deserializing model using pickle is disallowed"):
        load_model("models:/unet-pickle/1", tracking_uri=uri)
    with pytest.raises(BrainsegError, match="models:/unet-pt2/7: cannot load MLflow model"):
        load_model("models:/unet-pt2/7", tracking_uri=uri)
    with pytest.raises(BrainsegError, match="models:/unet-bare/1: not a brainseg model"):
        load_model("models:/unet-bare/1", tracking_uri=uri)
    assert not (tmp_path / "out.nii.gz").exists()


def test_postprocess_settings_are_applied_as_evaluate_applies_them(tiny, tmp_path):
    from brainseg.evaluation.inference import predict_probabilities
    from brainseg.evaluation.labelmaps import PostprocessSettings, apply, write_settings

    folder, ckpt = tiny
    settings = PostprocessSettings(thresholds={"WT": 0.3, "TC": 0.6, "ET": 0.7},
                                   min_component_mm3={"WT": 5.0, "TC": 0.0, "ET": 0.0},
                                   et_to_necrosis_mm3=0.0, flip_tta=True)
    write_settings(tmp_path / "pp.json", settings)
    out = segment(ckpt, [folder], tmp_path / "pp.nii.gz",
                      postprocess=tmp_path / "pp.json")[0]
    subject = load_subject(folder)
    model, config = load_checkpoint(ckpt)
    expected = apply(predict_probabilities(model, config, subject.image, 32, flip_tta=True),
                     settings, subject.spacing)
    assert np.array_equal(read(out)[0], expected)
    plain = segment(ckpt, [folder], tmp_path / "plain.nii.gz")[0]
    assert not np.array_equal(read(plain)[0], expected)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BrainsegError, match=r"bad\.json"):
        segment(ckpt, [folder], tmp_path / "x.nii.gz", postprocess=tmp_path / "bad.json")
    assert not (tmp_path / "x.nii.gz").exists()


def test_bf16_prediction_agrees_with_fp32_on_almost_every_voxel(tiny, tmp_path):
    folder, ckpt = tiny
    fp32 = read(segment(ckpt, [folder], tmp_path / "fp32.nii.gz")[0])[0]
    bf16, img = read(segment(ckpt, [folder], tmp_path / "bf16.nii.gz", precision="bf16")[0])
    assert img.get_data_dtype() == np.uint8 and bf16.shape == fp32.shape
    # bf16 rounds the activations, so a voxel near a threshold may flip: the varied model
    # puts its thresholds at quantiles inside this tiny brain on purpose, the worst case
    # (trained models on real scans: 99.97 % or more, benchmarks.bench_predict --precision)
    assert (bf16 == fp32).mean() >= 0.98
    assert set(np.unique(bf16).tolist()) == set(np.unique(fp32).tolist())


def test_auto_precision_is_bf16_only_where_the_device_has_it(monkeypatch):
    from brainseg import runtime

    assert runtime.resolve_precision("fp32", "cpu") == "fp32"
    assert runtime.resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr(runtime, "native_bf16", lambda device: False)
    assert runtime.resolve_precision("auto", "cpu") == "fp32"
    monkeypatch.setattr(runtime, "native_bf16", lambda device: True)
    assert runtime.resolve_precision("auto", "cpu") == "bf16"
    with pytest.raises(BrainsegError, match="unknown precision 'fp16'"):
        runtime.resolve_precision("fp16", "cpu")


def test_bf16_with_an_onnx_model_is_refused_before_anything_is_written(tiny, tmp_path):
    folder, _ = tiny
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"not read: refused by name first")
    out = tmp_path / "out" / "pred.nii.gz"
    with pytest.raises(BrainsegError, match="ONNX model, run by ONNX Runtime"):
        segment(graph, [folder], out, precision="bf16")
    assert not out.parent.exists()
