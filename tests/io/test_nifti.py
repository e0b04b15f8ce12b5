from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from brainseg.data.loading import load_subject
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.nifti import load_nifti, save_nifti
from tests.conftest import AFFINE, write_subject


def test_load_subject_stacks_modalities_and_keeps_affine(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    subject = load_subject(folder)
    assert subject.image.shape == (4, 32, 32, 12)
    assert subject.image.dtype == np.float32
    assert subject.seg.dtype == np.uint8
    assert set(np.unique(subject.seg)) <= {0, 1, 2, 4}
    np.testing.assert_allclose(subject.affine, AFFINE)
    assert subject.spacing == (1.0, 1.0, 1.0)


def test_real_case_loads(real_case):
    subject = load_subject(real_case)
    assert subject.image.shape == (4, 240, 240, 155)
    assert set(np.unique(subject.seg)) == {0, 1, 2}


def test_missing_modality_is_named(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    (folder / "S-001_t1ce.nii.gz").unlink()
    with pytest.raises(BrainsegError, match=r"S-001_t1ce\.nii\.gz: missing modality t1ce"):
        load_subject(folder)


def test_mismatched_shape_is_named(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    nib.save(nib.Nifti1Image(np.zeros((32, 30, 12), np.int16), AFFINE), folder / "S-001_t2.nii.gz")
    with pytest.raises(BrainsegError, match=r"S-001_t2\.nii\.gz: shape \(32, 30, 12\) differs"):
        load_subject(folder)


def test_mismatched_affine_is_named(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    moved = AFFINE.copy()
    moved[0, 3] = 5
    data = np.asarray(nib.load(folder / "S-001_flair.nii.gz").dataobj)
    nib.save(nib.Nifti1Image(data, moved), folder / "S-001_flair.nii.gz")
    with pytest.raises(BrainsegError, match=r"S-001_flair\.nii\.gz: affine differs"):
        load_subject(folder)


def test_truncated_file_is_named(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    path = folder / "S-001_t1.nii.gz"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BrainsegError, match=r"S-001_t1\.nii\.gz: cannot read NIfTI"):
        load_subject(folder)


def test_corrupt_file_is_named(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    path = folder / "S-001_seg.nii.gz"
    path.write_bytes(gzip.compress(b"this is not a NIfTI header" * 20))
    with pytest.raises(BrainsegError, match=r"S-001_seg\.nii\.gz: cannot read NIfTI"):
        load_subject(folder)


def test_unknown_labels_are_listed(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    seg = np.asarray(nib.load(folder / "S-001_seg.nii.gz").dataobj).copy()
    seg[0, 0, 0], seg[0, 0, 1] = 3, 7
    nib.save(nib.Nifti1Image(seg, AFFINE), folder / "S-001_seg.nii.gz")
    with pytest.raises(BrainsegError, match=r"S-001_seg\.nii\.gz: label values \[3, 7\] are not "
                                            r"defined by layout brats2020 \(0,1,2,4\)"):
        load_subject(folder)


def test_nan_voxels_are_refused(tmp_path):
    folder = write_subject(tmp_path, "S-001")
    data = np.asarray(nib.load(folder / "S-001_t2.nii.gz").dataobj).astype(np.float32)
    data[3, 3, 3] = np.nan
    data[4, 4, 4] = np.inf
    nib.save(nib.Nifti1Image(data, AFFINE), folder / "S-001_t2.nii.gz")
    with pytest.raises(BrainsegError, match=r"S-001_t2\.nii\.gz: 2 voxels are NaN or infinite"):
        load_subject(folder)


def test_save_nifti_is_deterministic_and_atomic(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    save_nifti(a, data, AFFINE)
    save_nifti(b, data, AFFINE)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "b.nii.gz"]
    np.testing.assert_array_equal(np.asarray(nib.load(a).dataobj), data)


@pytest.mark.parametrize("damage", ["cut_body", "flipped_bytes", "bad_crc"])
def test_damaged_gzip_stream_is_named(tmp_path, damage):
    """The ISA-L decoder reads the whole stream: a cut, a corrupt block or a bad CRC is named."""
    folder = write_subject(tmp_path, "S-001")
    path = folder / "S-001_flair.nii.gz"
    data = bytearray(path.read_bytes())
    if damage == "cut_body":
        data = data[: len(data) // 2]
    elif damage == "flipped_bytes":
        middle = len(data) // 2
        data[middle:middle + 64] = bytes(255 - b for b in data[middle:middle + 64])
    else:
        data[-8] ^= 0xFF  # CRC32 of the trailer
    path.write_bytes(bytes(data))
    with pytest.raises(BrainsegError, match=r"S-001_flair\.nii\.gz: cannot read NIfTI"):
        load_subject(folder)


def test_fast_decoder_matches_nibabel(real_case, tmp_path):
    """Same values as nibabel's own reader, scaled integers included; volumes Fortran-ordered."""
    subject = load_subject(real_case)
    for c, path in enumerate(subject.files[m] for m in MODALITIES):
        expected = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        np.testing.assert_array_equal(subject.image[c], expected)
        assert subject.image[c].flags.f_contiguous
    scaled = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), AFFINE)
    scaled.header.set_slope_inter(0.5, 10.0)
    nib.save(scaled, tmp_path / "scaled.nii.gz")
    data, _ = load_nifti(tmp_path / "scaled.nii.gz")
    np.testing.assert_array_equal(data, np.arange(24).reshape(2, 3, 4) * 0.5 + 10.0)


@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4", ">f8", "u1"])
def test_decoder_matches_nibabel_for_every_dtype_and_byte_order(tmp_path, dtype):
    """Voxels read in place from the inflated bytes equal nibabel's, whatever the byte order."""
    values = (np.arange(60).reshape(3, 4, 5) % 7).astype(dtype)
    img = nib.Nifti1Image(values, AFFINE)
    img.header.set_data_dtype(dtype)
    nib.save(img, tmp_path / "v.nii.gz")
    data, loaded = load_nifti(tmp_path / "v.nii.gz")
    expected = np.asarray(nib.load(tmp_path / "v.nii.gz").dataobj)
    assert data.dtype == np.float32 and data.flags.writeable
    np.testing.assert_array_equal(data, expected.astype(np.float32))
    np.testing.assert_array_equal(loaded.affine, AFFINE)
    native, _ = load_nifti(tmp_path / "v.nii.gz", native=True)
    assert native.dtype == (np.float32 if dtype.endswith(("f4", "f8")) else expected.dtype)
    np.testing.assert_array_equal(native, expected)


def test_short_data_behind_a_valid_gzip_stream_is_named(tmp_path):
    """A stream that inflates cleanly but holds fewer voxels than the header declares."""
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.int16), AFFINE), tmp_path / "v.nii.gz")
    body = gzip.decompress((tmp_path / "v.nii.gz").read_bytes())
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(body[:-10]))
    with pytest.raises(BrainsegError, match=r"v\.nii\.gz: cannot read NIfTI"):
        load_nifti(tmp_path / "v.nii.gz")
