"""NIfTI input and output: fast decoding, validation with clear errors, the original affine
and header kept, deterministic gzip.

Axis order everywhere is nibabel's (x, y, z), z being the axial slice axis of BraTS data.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip, isal_zlib

from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_file

SUFFIXES = (".nii.gz", ".nii")


def voxel_spacing(header: nib.Nifti1Header) -> tuple[float, float, float]:
    """Voxel size in mm along (x, y, z) from a NIfTI header (its first three zooms)."""
    return tuple(float(z) for z in header.get_zooms()[:3])  # type: ignore[return-value]


def find_nifti(folder: Path, stem: str) -> Path | None:
    """Return `<folder>/<stem>.nii.gz` (or `.nii`) if it exists."""
    for suffix in SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


# What a corrupt, truncated or non-NIfTI file raises while it is decoded.
DECODE_ERRORS = (OSError, EOFError, zlib.error, isal_zlib.error, ValueError,
                 nib.filebasedimages.ImageFileError)


def decode_nifti(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The voxel array of a NIfTI file, as nibabel's `dataobj` gives it, and its image.

    A gzipped NIfTI-1/2 is inflated in one call with ISA-L and its voxels are read in place
    from the inflated bytes (a read-only view; scaled by `scl_slope`/`scl_inter` as nibabel
    does). nibabel's own path (zlib through Python's `gzip`, in small chunks, then two more
    copies) is slower (`make bench` measures both: docs/performance.md); the values are
    the same. Other formats fall back to `nib.load`. The image's header and affine are
    those of the file.
    """
    img = nib.load(path)
    if not (path.name.endswith(".gz") and isinstance(img, nib.Nifti1Image)):
        return np.asanyarray(img.dataobj), img
    raw = igzip.decompress(path.read_bytes())
    proxy = img.dataobj  # where the voxels start, their dtype, shape and scaling
    data = np.frombuffer(raw, dtype=proxy.dtype, count=int(np.prod(proxy.shape)),
                         offset=int(proxy.offset)).reshape(proxy.shape, order="F")
    return nib.volumeutils.apply_read_scaling(data, proxy.slope, proxy.inter), img


def load_nifti(path: Path, out: np.ndarray | None = None,
               native: bool = False) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Decode one 3D NIfTI file into float32, refusing corrupt, non-3D or non-finite data.

    The array keeps nibabel's (Fortran) memory order: an axial slice `data[:, :, z]` is
    one contiguous block. With `out` (float32, the file's shape) the values are written
    there (one conversion, no intermediate copy) and `out` is returned; with another
    shape, a new array (the caller reports the mismatch). With `native`, integer data
    (a label map) comes back in its own dtype, read-only, instead of float32.

    Raises:
        BrainsegError: naming the file and the problem.
    """
    try:
        raw, img = decode_nifti(Path(path))
    except DECODE_ERRORS as exc:
        raise BrainsegError(f"{path}: cannot read NIfTI (corrupt or truncated?): {exc}") from exc
    if raw.ndim != 3:
        raise BrainsegError(f"{path}: expected a 3D volume, got shape {raw.shape}")
    if native and raw.dtype.kind in "iub":
        return raw, img
    if out is not None and out.shape == raw.shape:
        data = out
        np.copyto(data, raw, casting="unsafe")
    else:
        data = raw.astype(np.float32, order="K")
    if raw.dtype.kind not in "iub" and not np.isfinite(data).all():  # integers are finite
        bad = int((~np.isfinite(data)).sum())
        raise BrainsegError(f"{path}: {bad} voxels are NaN or infinite")
    return data, img


def save_nifti(path: str | Path, data: np.ndarray, affine: np.ndarray, header=None) -> None:
    """Write `data` as (gzipped) NIfTI atomically, keeping the given affine and header.

    nibabel writes gzip with a fixed timestamp, so equal arrays give equal bytes.
    """
    img = nib.Nifti1Image(data, affine, header=header)
    img.set_data_dtype(data.dtype)
    if header is not None:
        img.set_qform(affine, code=int(header["qform_code"]))
        img.set_sform(affine, code=int(header["sform_code"]))
    with atomic_file(path) as tmp:
        nib.save(img, tmp)


def copy_as_gzip(src: Path, dst: Path) -> None:
    """Copy a `.nii.gz` as is, or gzip a `.nii` deterministically (no timestamp), atomically."""
    with atomic_file(dst) as tmp:
        if src.name.endswith(".gz"):
            shutil.copyfile(src, tmp)
        else:
            with (
                src.open("rb") as fin,
                tmp.open("wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fout,
            ):
                shutil.copyfileobj(fin, fout)
