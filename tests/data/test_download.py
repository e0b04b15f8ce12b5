from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pandas as pd
import pytest

from brainseg.data.download import run_download
from brainseg.data.extract import run_extract
from brainseg.data.loading import load_subject
from brainseg.data.normalize import run_normalize
from brainseg.data.subjects import subject_ids, synthetic_ids, synthetic_index
from brainseg.errors import BrainsegError


def local(params, path):
    params["download"].update(source="local", path=str(path))
    return params


def test_local_ingest_copies_validates_and_writes_the_manifest(params, tiny_cohort, tmp_path):
    # one subject shipped uncompressed, as the Kaggle copy of BraTS 2020 does
    nii = tiny_cohort / "TINY-001" / "TINY-001_t2.nii.gz"
    (nii.parent / "TINY-001_t2.nii").write_bytes(gzip.decompress(nii.read_bytes()))
    nii.unlink()
    out = tmp_path / "raw"
    written = run_download(params=local(params, tiny_cohort), out_dir=out, jobs=1)
    assert written == [f"TINY-{i:03d}" for i in range(5)]
    src = tiny_cohort / "TINY-000" / "TINY-000_flair.nii.gz"
    assert (out / "TINY-000" / "TINY-000_flair.nii.gz").read_bytes() == src.read_bytes()
    converted = load_subject(out / "TINY-001")
    np.testing.assert_array_equal(converted.image, load_subject(tiny_cohort / "TINY-001").image)
    manifest = pd.read_csv(out / "manifest.csv")
    assert manifest["subject"].tolist() == written
    assert (manifest["source"] == "local").all() and (manifest["shape"] == "32x32x12").all()
    row = manifest.iloc[0]
    digest = hashlib.sha256((out / row["t1_file"]).read_bytes()).hexdigest()
    assert row["t1_sha256"] == digest
    assert row["wt_voxels"] >= row["tc_voxels"] >= row["et_voxels"] > 0


def test_extract_and_normalize_write_the_training_store(params, tiny_cohort, tmp_path):
    params["extract"].update(image_size=32, min_brain_pixels=4)
    run_download(params=local(params, tiny_cohort), out_dir=tmp_path / "raw", jobs=1)
    run_extract(params=params, raw_dir=tmp_path / "raw", out_dir=tmp_path / "ext", jobs=2)
    run_normalize(params=params, in_dir=tmp_path / "ext", out_dir=tmp_path / "slices", jobs=1)
    image = np.load(tmp_path / "slices" / "TINY-002" / "image.npy", mmap_mode="r")
    label = np.load(tmp_path / "slices" / "TINY-002" / "label.npy")
    assert image.dtype == np.float16 and image.shape[1:] == (4, 32, 32)
    assert label.shape == (image.shape[0], 32, 32) and set(np.unique(label)) <= {0, 1, 2, 4}
    assert sorted(p.name for p in (tmp_path / "slices").iterdir()) == [
        f"TINY-{i:03d}" for i in range(5)]


def test_synthetic_download_of_one_subject_is_deterministic(params, tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run_download(params=params, out_dir=out, subjects=["SMOKE-001"], manifest=False, jobs=1)
    files = sorted(p.name for p in (first / "SMOKE-001").iterdir())
    assert files == [f"SMOKE-001_{k}.nii.gz" for k in ("flair", "seg", "t1", "t1ce", "t2")]
    for name in files:
        a, b = first / "SMOKE-001" / name, second / "SMOKE-001" / name
        assert a.read_bytes() == b.read_bytes()
    subject = load_subject(first / "SMOKE-001")
    assert subject.image.shape == (4, 240, 240, 155) and (subject.seg > 0).any()


def test_unknown_subject_and_missing_path_are_refused(params, tmp_path):
    with pytest.raises(BrainsegError, match="unknown ids"):
        run_download(params=params, out_dir=tmp_path, subjects=["NOPE-001"])
    params["download"].update(source="local", path=None)
    with pytest.raises(BrainsegError, match=r"download\.path: required"):
        subject_ids(params["download"])


def test_synthetic_ids_round_trip():
    ids = synthetic_ids("BraTS-SYN", 3)
    assert ids == ["BraTS-SYN-000", "BraTS-SYN-001", "BraTS-SYN-002"]
    assert [synthetic_index(s) for s in ids] == [0, 1, 2]
    with pytest.raises(BrainsegError, match="not a synthetic subject id"):
        synthetic_index("patient")


def test_local_ingest_of_the_real_case(params, real_case, tmp_path):
    run_download(params=local(params, real_case.parent), out_dir=tmp_path / "raw", jobs=1)
    manifest = pd.read_csv(tmp_path / "raw" / "manifest.csv")
    assert manifest["subject"].tolist() == ["TCGA-DU-7294"]
    row = manifest.iloc[0]
    assert (row["shape"], row["spacing"], row["et_voxels"]) == ("240x240x155", "1x1x1", 0)
    assert row["t1_sha256"] == "956a6a4ec4b571be242c55828ae2fad48ed21c28d8e5074110ed28453be2adb3"
    assert 20000 < row["wt_voxels"] < 30000
