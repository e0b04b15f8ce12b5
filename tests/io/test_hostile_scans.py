"""Hostile scans: files whose header lies, or whose name or place is not what it seems.

Each row of `HOSTILE` is one row of the table in docs/data.md ("Hostile scans"): how the
file is made, which file of a subject it is, and the message. Every row is refused by
`brainseg download` from a local source (which validates each subject as every later stage
does); the header rows by `load_nifti` too, within a memory bound (nothing allocated for
the voxels a lying header declares); the rows of a modality file that is not a link by
`brainseg predict` too (predict reads the files it is given, and no label map). Each: one
message naming the file and the fault, exit status 1, no output.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainseg.errors import BrainsegError
from brainseg.io.nifti import MAX_TRAILING_BYTES, load_nifti
from tests.conftest import write_subject
from tests.evaluation.test_inference import save_checkpoint
from tests.test_cli import local_params

SUBJECT = "BAD-001"


def edit_header(path: Path, **fields) -> None:
    """Rewrite header fields of a (gzipped) NIfTI-1 file in place, as the bytes on disk."""
    body = bytearray(gzip.decompress(path.read_bytes()))
    dtype = nib.Nifti1Header().structarr.dtype.newbyteorder("<")
    header = np.frombuffer(bytes(body[:348]), dtype=dtype).copy()
    for name, value in fields.items():
        header[name] = value
    body[:348] = header.tobytes()
    path.write_bytes(gzip.compress(bytes(body), mtime=0))


def append_zeros(path: Path, n: int) -> None:
    """A gzip bomb: the same header and voxels, then `n` zero bytes (a few kB compressed)."""
    body = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(body + bytes(n), mtime=0))


def float_labels(path: Path) -> None:
    seg = np.asarray(nib.load(path).dataobj).astype(np.float32)
    seg[seg == 2] = 1.5
    nib.save(nib.Nifti1Image(seg, nib.load(path).affine), path)


def link_outside(path: Path) -> None:
    """The modality file replaced by a link to a file outside the dataset folder."""
    outside = path.parents[2] / "elsewhere" / path.name
    outside.parent.mkdir(exist_ok=True)
    path.rename(outside)
    path.symlink_to(outside)


def dims(*shape: int) -> list[int]:
    return [len(shape), *shape, *[1] * (7 - len(shape))]


def pixdim(*zooms: float) -> list[float]:
    return [1.0, *zooms, *[1.0] * (7 - len(zooms))]


# name: (what is done to the file, which file of the subject, message (a substring))
HOSTILE: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "huge volume": (lambda p: edit_header(p, dim=dims(30000, 30000, 12)), "t1",
                    "declares shape (30000, 30000, 12) of int16, 20.1 GiB of voxels"),
    "negative dimension": (lambda p: edit_header(p, dim=dims(32, -32, 12)), "t2",
                           "declares shape (32, -32, 12): every dimension must be at least 1"),
    "zero dimension": (lambda p: edit_header(p, dim=dims(32, 0, 12)), "t2",
                       "declares shape (32, 0, 12): every dimension must be at least 1"),
    "vox_offset past the end": (lambda p: edit_header(p, vox_offset=1e7), "flair",
                                "cannot read NIfTI (corrupt or truncated?): it holds"),
    "unknown datatype": (lambda p: edit_header(p, datatype=999), "t1ce",
                         "cannot read NIfTI (corrupt or truncated?): data code 999 not "
                         "recognized"),
    "NaN voxel size": (lambda p: edit_header(p, pixdim=pixdim(np.nan, 1, 1)), "t1",
                       "voxel size (nan, 1.0, 1.0) mm: each must be a positive finite number"),
    "zero voxel size": (lambda p: edit_header(p, pixdim=pixdim(1, 1, 0)), "t1",
                        "voxel size (1.0, 1.0, 0.0) mm: each must be a positive finite number"),
    "NaN in the affine": (lambda p: edit_header(p, sform_code=1,
                                                srow_x=[np.nan, 0, 0, 0]), "flair",
                          "the affine (voxel to world) has NaN or infinite entries"),
    "singular affine": (lambda p: edit_header(p, sform_code=1, qform_code=0,
                                              srow_x=[0, 0, 0, 0]), "flair",
                        "the affine (voxel to world) is singular"),
    "5D image": (lambda p: edit_header(p, dim=dims(32, 32, 12, 1, 1)), "t2",
                 "expected a 3D volume, got shape (32, 32, 12, 1, 1)"),
    "2D image": (lambda p: edit_header(p, dim=dims(32, 384)), "t2",
                 "expected a 3D volume, got shape (32, 384)"),
    "gzip bomb": (lambda p: append_zeros(p, 64 * MAX_TRAILING_BYTES), "t1ce",
                  "the gzip stream inflates beyond the"),
    "float labels (1.5)": (float_labels, "seg",
                           "label values [1.5] are not defined by layout brats2020"),
    "link outside the dataset": (link_outside, "t1",
                                 "is a link to a file outside the dataset folder"),
}
# rows that are about a file's header or bytes (load_nifti alone refuses them)
HEADER_ROWS = [name for name in HOSTILE if name not in ("float labels (1.5)",
                                                        "link outside the dataset")]


def brainseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainseg", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def hostile_subject(root: Path, case: str) -> Path:
    folder = write_subject(root / "source", SUBJECT)
    damage, key, _ = HOSTILE[case]
    damage(folder / f"{SUBJECT}_{key}.nii.gz")
    return folder / f"{SUBJECT}_{key}.nii.gz"


@pytest.mark.parametrize("case", HEADER_ROWS)
def test_load_nifti_refuses_it_within_a_memory_bound(case, tmp_path):
    path = hostile_subject(tmp_path, case)
    tracemalloc.start()
    try:
        with pytest.raises(BrainsegError) as caught:
            load_nifti(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and HOSTILE[case][2] in message, message
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB allocated before refusing"


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_download_and_predict_refuse_it_with_one_message_and_no_output(case, tmp_path):
    bad = hostile_subject(tmp_path, case)
    write_subject(tmp_path / "source", "OK-001", seed=1)
    message = HOSTILE[case][2]
    params = local_params(tmp_path, tmp_path / "source")
    result = brainseg("download", "--params", str(params), "--out-dir", "raw", "--jobs", "1",
                      cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and message in errors[0] and bad.name in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "raw" / "manifest.csv").exists()
    assert not (tmp_path / "raw" / SUBJECT).exists()
    if case == "link outside the dataset" or HOSTILE[case][1] == "seg":
        return  # predict reads the modalities a user names (links or not), not a label map
    save_checkpoint(tmp_path / "m.pt")
    result = brainseg("predict", "--model", "m.pt", "--input", str(bad.parent), "--output",
                      "out/pred.nii.gz", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and message in errors[0] and bad.name in errors[0], result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "out").exists()


NAMES = ["P 001", "Pätiént-ü", "P;rm -rf $(x)`y`&'\"", "P\tnew\nline"]


@pytest.mark.parametrize("name", NAMES, ids=["spaces", "unicode", "shell", "control"])
def test_predict_takes_any_file_name_as_a_plain_path(name, tmp_path):
    """predict never goes through a shell: a folder of any name is read and written as is."""
    folder = write_subject(tmp_path / "in", name)
    save_checkpoint(tmp_path / "m.pt")
    out = tmp_path / "out" / f"{name}_seg.nii.gz"
    result = brainseg("predict", "--model", "m.pt", "--input", str(folder), "--output",
                      str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert os.listdir(tmp_path / "out") == [out.name]
    assert nib.load(out).shape == (32, 32, 12)


@pytest.mark.parametrize("name", NAMES, ids=["spaces", "unicode", "shell", "control"])
def test_download_refuses_a_subject_id_the_pipeline_cannot_name(name, tmp_path):
    """The pipeline names files and Snakemake wildcards after the subject id."""
    write_subject(tmp_path / "source", name)
    params = local_params(tmp_path, tmp_path / "source")
    result = brainseg("download", "--params", str(params), "--out-dir", "raw", cwd=tmp_path)
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert result.returncode == 1, result.stderr
    assert len(errors) == 1 and "subject id" in errors[0], result.stderr
    assert "letters, digits" in errors[0] and "Traceback" not in result.stderr
    assert not (tmp_path / "raw").exists()
