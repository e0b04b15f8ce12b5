"""Every source through `run_download`: BraTS 2023 and Decathlon folders, and an archive URL."""

from __future__ import annotations

import hashlib
import json
import logging
import tarfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainseg.data.download import run_download
from brainseg.data.loading import load_subject
from brainseg.errors import BrainsegError
from tests.conftest import AFFINE

BRATS23 = {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"}


def as_brats2023(src: Path, dst: Path) -> None:
    """Rewrite a BraTS 2020 subject with 2023 names and labels (4 → 3)."""
    subject = src.name
    (dst / subject).mkdir(parents=True)
    for key, new in BRATS23.items():
        img = nib.load(src / f"{subject}_{key}.nii.gz")
        data = np.asarray(img.dataobj)
        if key == "seg":
            data = np.where(data == 4, 3, data).astype(np.uint8)
        nib.save(nib.Nifti1Image(data, img.affine), dst / subject / f"{subject}-{new}.nii.gz")


def as_decathlon(src: Path, dst: Path, labelled: bool = True) -> None:
    """Rewrite a BraTS 2020 subject as a Decathlon Task01 case (4D image, labels 1/2/3)."""
    subject = src.name
    channels = [np.asarray(nib.load(src / f"{subject}_{k}.nii.gz").dataobj)
                for k in ("flair", "t1", "t1ce", "t2")]
    folder = "imagesTr" if labelled else "imagesTs"
    (dst / folder).mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(np.stack(channels, axis=-1), AFFINE)
    nib.save(image, dst / folder / f"{subject}.nii.gz")
    if labelled:
        seg = np.asarray(nib.load(src / f"{subject}_seg.nii.gz").dataobj)
        mapped = np.select([seg == 2, seg == 1, seg == 4], [1, 2, 3], 0).astype(np.uint8)
        (dst / "labelsTr").mkdir(exist_ok=True)
        nib.save(nib.Nifti1Image(mapped, AFFINE), dst / "labelsTr" / f"{subject}.nii.gz")
    (dst / "dataset.json").write_text(json.dumps({"name": "BRATS"}))


def check_same_as_source(out: Path, reference: Path, subject: str) -> None:
    got, want = load_subject(out / subject), load_subject(reference / subject)
    np.testing.assert_array_equal(got.image, want.image)
    np.testing.assert_array_equal(got.seg, want.seg)
    np.testing.assert_allclose(got.affine, want.affine)


def test_brats2023_folder_is_converted_to_the_internal_layout(params, tiny_cohort, tmp_path):
    src = tmp_path / "brats23"
    for folder in sorted(tiny_cohort.iterdir()):
        as_brats2023(folder, src)
    params["download"].update(source="local", path=str(src), layout="auto")
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    check_same_as_source(tmp_path / "raw", tiny_cohort, "TINY-003")
    assert pd.read_csv(tmp_path / "raw" / "manifest.csv")["et_voxels"].gt(0).all()


def test_unlabelled_subjects_are_refused_for_training_by_name(params, tiny_cohort, tmp_path,
                                                              caplog):
    src = tmp_path / "brats23"
    for folder in sorted(tiny_cohort.iterdir()):
        as_brats2023(folder, src)
    for subject in ("TINY-001", "TINY-004"):
        (src / subject / f"{subject}-seg.nii.gz").unlink()
    params["download"].update(source="local", path=str(src), layout="auto")
    with caplog.at_level(logging.WARNING):
        written = run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    assert written == ["TINY-000", "TINY-002", "TINY-003"]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir() if p.is_dir()) == written
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "2 subjects without a label map left out of the training cohort" in warning
    assert "TINY-001, TINY-004" in warning and "brainseg predict" in warning
    with pytest.raises(BrainsegError, match=r"--subject: unknown ids \['TINY-001'\] for "
                       r"these params \(subjects without a label map are not part"):
        run_download(params=params, out_dir=tmp_path / "raw2", subjects=["TINY-001"], jobs=1)
    for subject in ("TINY-000", "TINY-002", "TINY-003"):
        (src / subject / f"{subject}-seg.nii.gz").unlink()
    with pytest.raises(BrainsegError, match=r"no subject with a label map .*brainseg predict"):
        run_download(params=params, out_dir=tmp_path / "raw3", jobs=1)


def test_decathlon_folder_skips_unlabelled_and_hidden_files(params, tiny_cohort, tmp_path):
    src = tmp_path / "Task01_BrainTumour"
    folders = sorted(tiny_cohort.iterdir())
    for folder in folders[:4]:
        as_decathlon(folder, src)
    as_decathlon(folders[4], src, labelled=False)
    (src / "imagesTr" / "._TINY-000.nii.gz").write_bytes(b"\x00\x05\x16\x07 mac junk")
    params["download"].update(source="local", path=str(src), layout="decathlon")
    written = run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    assert written == ["TINY-000", "TINY-001", "TINY-002", "TINY-003"]
    check_same_as_source(tmp_path / "raw", tiny_cohort, "TINY-002")


def test_url_source_fetches_verifies_unpacks_and_ingests(params, tiny_cohort, tmp_path, served):
    www, base = served
    archive = www / "cohort.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tiny_cohort, arcname="MICCAI_BraTS2020_TrainingData")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    params["download"].update(source="url", url=f"{base}/cohort.tar.gz", sha256=digest)
    source_dir = tmp_path / "source"
    written = run_download(params=params, out_dir=tmp_path / "raw", jobs=1, source_dir=source_dir)
    assert written == [f"TINY-{i:03d}" for i in range(5)]
    check_same_as_source(tmp_path / "raw", tiny_cohort, "TINY-004")
    assert (source_dir / "archive" / "cohort.tar.gz").read_bytes() == archive.read_bytes()
    archive.unlink()  # a second run uses the verified cache, not the network
    again = run_download(params=params, out_dir=tmp_path / "raw2", jobs=1, source_dir=source_dir)
    assert again == written


def test_url_source_with_a_wrong_checksum_writes_nothing(params, tiny_cohort, tmp_path, served):
    www, base = served
    with tarfile.open(www / "cohort.tar.gz", "w:gz") as tar:
        tar.add(tiny_cohort, arcname="data")
    params["download"].update(source="url", url=f"{base}/cohort.tar.gz", sha256="0" * 64)
    with pytest.raises(BrainsegError, match="sha256 mismatch"):
        run_download(params=params, out_dir=tmp_path / "raw", jobs=1,
                     source_dir=tmp_path / "source")
    assert not (tmp_path / "raw").exists()
    assert list((tmp_path / "source").rglob("*.tar.gz*")) == []
