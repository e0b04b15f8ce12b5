"""The Kaggle LGG layout: TIFF slices stacked into one volume per patient, WT-only labels."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import tifffile

from brainseg.data.download import run_download
from brainseg.data.labels import header_marks
from brainseg.data.layouts import dataset_subjects, detect_layout
from brainseg.data.loading import load_source_subject, load_subject
from brainseg.data.manifest import manifest_row
from brainseg.data.subjects import raw_modalities
from brainseg.errors import BrainsegError
from tests.conftest import REPO

LGG = REPO.parent / "shared" / "fixtures" / "lgg"
needs_lgg = pytest.mark.skipif(not LGG.is_dir(), reason=f"Kaggle LGG fixture not found at {LGG}")


def write_lgg(
    root: Path,
    patient: str,
    slices: list[int],
    seed: int = 0,
    shape=(16, 20),
    mask_value: int = 255,
    **tiff,
) -> Path:
    """A patient folder of the LGG layout: RGB slices with a square lesion in each mask."""
    rng = np.random.default_rng(seed)
    folder = root / patient
    folder.mkdir(parents=True)
    for n in slices:
        image = rng.integers(1, 255, (*shape, 3), dtype=np.uint8)
        mask = np.zeros(shape, np.uint8)
        mask[4 : 4 + n % 5, 6:9] = mask_value
        tifffile.imwrite(folder / f"{patient}_{n}.tif", image, photometric="rgb", **tiff)
        tifffile.imwrite(folder / f"{patient}_{n}_mask.tif", mask, **tiff)
    return folder


def test_slices_stack_by_number_with_three_modalities_and_wt_only(tmp_path):
    write_lgg(tmp_path, "TCGA_XX_0001_20000101", [2, 10, 1], seed=1)
    assert detect_layout(tmp_path) == "lgg"
    subject = load_source_subject(tmp_path, "lgg", "TCGA_XX_0001_20000101")
    assert subject.image.shape == (3, 20, 16, 3) and subject.seg.shape == (20, 16, 3)
    assert subject.modalities == ("t1", "t1ce", "flair") and subject.regions == ("WT",)
    folder = tmp_path / "TCGA_XX_0001_20000101"
    for z, n in enumerate([1, 2, 10]):  # numeric order, not 1, 10, 2
        rgb = tifffile.imread(folder / f"TCGA_XX_0001_20000101_{n}.tif")
        for c, channel in enumerate((0, 2, 1)):  # t1 = pre, t1ce = post, flair = FLAIR
            np.testing.assert_array_equal(subject.image[c, :, :, z], rgb[..., channel].T)
        mask = tifffile.imread(folder / f"TCGA_XX_0001_20000101_{n}_mask.tif")
        np.testing.assert_array_equal(subject.seg[:, :, z], np.where(mask.T > 0, 2, 0))
    assert subject.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(subject.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_the_written_files_keep_the_lgg_affine(tmp_path, params):
    write_lgg(tmp_path / "src", "P1", [1, 2])
    params["download"].update(source="local", path=str(tmp_path / "src"), layout="lgg")
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    for key in ("t1", "flair", "seg"):
        img = nib.load(tmp_path / "raw" / "P1" / f"P1_{key}.nii.gz")
        np.testing.assert_array_equal(img.affine, np.diag([-1.0, -1.0, 1.0, 1.0]))


def test_binary_masks_and_resolution_tags_are_read(tmp_path):
    write_lgg(tmp_path, "P1", [1], mask_value=1, resolution=(20.0, 20.0), resolutionunit=3)
    subject = load_source_subject(tmp_path, "lgg", "P1")
    assert set(np.unique(subject.seg)) == {0, 2}
    assert subject.spacing == pytest.approx((0.5, 0.5, 1.0))  # 20 pixels per cm


@pytest.mark.parametrize(
    ("breaker", "message"),
    [
        (lambda f: (f / "P1_2_mask.tif").unlink(), r"P1_2_mask\.tif: missing mask of slice P1_2"),
        (
            lambda f: tifffile.imwrite(f / "P1_2_mask.tif", np.zeros((8, 8), np.uint8)),
            r"P1_2_mask\.tif: mask shape \(8, 8\) differs from its slice \(16, 20\)",
        ),
        (
            lambda f: tifffile.imwrite(f / "P1_2_mask.tif", np.full((16, 20), 128, np.uint8)),
            r"P1_2_mask\.tif: mask values \[128\] are not 0/255 or 0/1",
        ),
        (
            lambda f: tifffile.imwrite(f / "P1_2.tif", np.zeros((16, 21, 3), np.uint8)),
            r"P1_2\.tif: shape \(16, 21, 3\) differs from P1_1\.tif",
        ),
        (
            lambda f: tifffile.imwrite(f / "P1_2.tif", np.zeros((16, 20), np.uint8)),
            r"P1_2\.tif: expected a \(h, w, 3\) slice",
        ),
        (lambda f: (f / "P1_2.tif").write_bytes(b"II*\0garbage"), r"P1_2\.tif: cannot read TIFF"),
    ],
)
def test_bad_input_names_the_file(tmp_path, breaker, message):
    breaker(write_lgg(tmp_path, "P1", [1, 2]))
    with pytest.raises(BrainsegError, match=message):
        load_source_subject(tmp_path, "lgg", "P1")


def test_the_raw_subject_records_its_modalities_and_a_missing_one_is_refused(tmp_path, params):
    write_lgg(tmp_path / "src", "P1", [1, 2])
    params["download"].update(source="local", path=str(tmp_path / "src"), layout="lgg")
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    raw = tmp_path / "raw" / "P1"
    assert sorted(p.name for p in raw.iterdir()) == [
        "P1_flair.nii.gz",
        "P1_seg.nii.gz",
        "P1_t1.nii.gz",
        "P1_t1ce.nii.gz",
    ]
    assert header_marks(nib.load(raw / "P1_seg.nii.gz").header) == (
        ("t1", "t1ce", "flair"),
        ("WT",),
    )
    assert load_subject(raw).modalities == ("t1", "t1ce", "flair")
    assert raw_modalities(params["download"]) == ("t1", "t1ce", "flair")
    (raw / "P1_flair.nii.gz").unlink()
    with pytest.raises(BrainsegError, match=r"P1_flair\.nii\.gz: missing modality flair"):
        load_subject(raw)
    with pytest.raises(BrainsegError, match="missing modality flair"):
        manifest_row(raw, "local")


@needs_lgg
def test_the_fixture_ingests_into_the_raw_layout_and_manifest(tmp_path, params):
    assert detect_layout(LGG) == "lgg" and len(dataset_subjects(LGG, "lgg")) == 8
    params["download"].update(source="local", path=str(LGG), layout="auto")
    written = run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    assert len(written) == 8
    text = (tmp_path / "raw" / "manifest.csv").read_text()
    manifest = pd.read_csv(tmp_path / "raw" / "manifest.csv")
    assert manifest["modalities"].unique().tolist() == ["t1 t1ce flair"]
    assert manifest["regions"].unique().tolist() == ["WT"]
    assert manifest["tc_voxels"].isna().all() and manifest["t2_file"].isna().all()
    assert ",n/a," in text  # not available, not 0
    wt = dict(zip(manifest["subject"], manifest["wt_voxels"], strict=True))
    assert wt["TCGA_DU_6399_19830416"] == 1426 and wt["TCGA_DU_7298_19910324"] == 4091
    assert sum(v > 0 for v in wt.values()) == 2
    assert set(manifest["shape"]) == {"256x256x1"} and set(manifest["spacing"]) == {"1x1x1"}
    subject = load_subject(tmp_path / "raw" / "TCGA_DU_7298_19910324")
    rgb = tifffile.imread(LGG / "TCGA_DU_7298_19910324" / "TCGA_DU_7298_19910324_14.tif")
    np.testing.assert_array_equal(subject.image[2, :, :, 0], rgb[..., 1].T)  # FLAIR
    assert subject.regions == ("WT",) and int((subject.seg == 2).sum()) == 4091
