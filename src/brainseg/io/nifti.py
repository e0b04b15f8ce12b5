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
from isal import isal_zlib

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
                 nib.filebasedimages.ImageFileError, nib.spatialimages.HeaderDataError)

# The most voxel bytes a header may declare (2 GiB): a BraTS volume is 18 MB (int16), a
# Decathlon 4D image 143 MB (float32). Checked before any voxel is read or inflated.
MAX_VOXEL_BYTES = 2**31
# Bytes a gzip stream may hold after the voxels its header declares (read and dropped,
# so that the CRC is checked); more is a stream that inflates beyond the file it claims
# to be (a gzip bomb).
MAX_TRAILING_BYTES = 2**20


def check_header(path: Path, img: nib.Nifti1Image, raw_pixdim: np.ndarray) -> None:
    """Refuse a header that cannot describe a sane image, before any voxel is read.

    Args:
        path: the file (named in the message).
        img: the image nibabel made of the header.
        raw_pixdim: pixdim as the file has it (nibabel replaces zero voxel sizes by 1).

    Raises:
        BrainsegError: a dimension below 1, more voxel bytes than MAX_VOXEL_BYTES, a voxel
            size that is zero, negative or not finite, an affine that is not finite or is
            singular.
    """
    shape = tuple(int(n) for n in img.header["dim"][1:int(img.header["dim"][0]) + 1])
    if not 1 <= len(shape) <= 7 or min(shape) < 1:
        raise BrainsegError(f"{path}: the header declares shape {shape}: every dimension "
                            "must be at least 1")
    nbytes = int(np.prod(shape, dtype=np.float64)) * img.get_data_dtype().itemsize
    if nbytes > MAX_VOXEL_BYTES:
        raise BrainsegError(f"{path}: the header declares shape {shape} of "
                            f"{img.get_data_dtype()}, {nbytes / 2**30:.1f} GiB of voxels (at most "
                            f"{MAX_VOXEL_BYTES / 2**30:.0f} GiB): not read")
    spatial = np.asarray(raw_pixdim[1:1 + min(3, len(shape))], dtype=np.float64)
    if not (np.isfinite(spatial).all() and (spatial > 0).all()):
        raise BrainsegError(f"{path}: voxel size {tuple(float(z) for z in spatial)} mm: each "
                            "must be a positive finite number")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.isfinite(affine).all():
        raise BrainsegError(f"{path}: the affine (voxel to world) has NaN or infinite entries")
    if abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise BrainsegError(f"{path}: the affine (voxel to world) is singular: its 3x3 part "
                            "has determinant 0")


def _raw_pixdim(block: bytes, header: nib.Nifti1Header) -> np.ndarray:
    """pixdim as the first bytes of the file hold it (byte order and layout of `header`)."""
    dtype = header.structarr.dtype
    return np.frombuffer(block[:dtype.itemsize], dtype=dtype, count=1)[0]["pixdim"]


def _inflate(path: Path, data: bytes, expected: int) -> bytes:
    """The first `expected` bytes a gzip file inflates to, never more in memory.

    The stream is read to its end (so that every member's CRC is checked), the bytes past
    `expected` dropped; more than MAX_TRAILING_BYTES past it is refused.

    Raises:
        BrainsegError: the stream holds fewer bytes, or far more, than `expected`.
    """
    chunks, have, extra = [], 0, 0
    while data:
        unzip = isal_zlib.decompressobj(31)
        while not unzip.eof:
            room = expected - have
            chunk = unzip.decompress(unzip.unconsumed_tail or data, room if room > 0 else 65536)
            data = b""
            if room > 0:
                chunks.append(chunk)
                have += len(chunk)
            else:
                extra += len(chunk)
                if extra > MAX_TRAILING_BYTES:
                    raise BrainsegError(f"{path}: the gzip stream inflates beyond the "
                                        f"{expected} bytes its header declares (more than "
                                        f"{MAX_TRAILING_BYTES} past them): not read")
            if not chunk and not unzip.unconsumed_tail and not unzip.eof:
                raise BrainsegError(f"{path}: cannot read NIfTI (corrupt or truncated?): the "
                                    "gzip stream ends early")
        data = unzip.unused_data  # another gzip member follows (concatenated streams)
    if have < expected:
        raise BrainsegError(f"{path}: cannot read NIfTI (corrupt or truncated?): it holds "
                            f"{have} bytes, its header declares {expected}")
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def decode_nifti(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The voxel array of a NIfTI file, as nibabel's `dataobj` gives it, and its image.

    The header is checked first (`check_header`): nothing is allocated for a header that
    lies. A gzipped NIfTI-1/2 is inflated with ISA-L, at most to the bytes its header
    declares, and its voxels are read in place from the inflated bytes (a read-only view;
    scaled by `scl_slope`/`scl_inter` as nibabel does). nibabel's own path (zlib through
    Python's `gzip`, in small chunks, then two more copies) is slower (`make bench`
    measures both: docs/performance.md); the values are the same. Other formats fall back
    to `nib.load`. The image's header and affine are those of the file.

    Raises:
        BrainsegError: a header `check_header` refuses, a gzip stream too short or too long.
        DECODE_ERRORS: what nibabel raises for a file that is not NIfTI or is corrupt.
    """
    img = nib.load(path)
    gzipped = path.name.endswith(".gz")
    if not isinstance(img, nib.Nifti1Image):  # NIfTI-2 subclasses it; other formats
        return np.asanyarray(img.dataobj), img
    if not gzipped:  # only the header is read here; nibabel maps the voxels
        with path.open("rb") as fh:
            check_header(path, img, _raw_pixdim(fh.read(544), img.header))
        return np.asanyarray(img.dataobj), img
    data = path.read_bytes()
    check_header(path, img, _raw_pixdim(isal_zlib.decompressobj(31).decompress(data, 544),
                                        img.header))
    proxy = img.dataobj  # where the voxels start, their dtype, shape and scaling
    count = int(np.prod(proxy.shape))
    raw = _inflate(path, data, int(proxy.offset) + count * proxy.dtype.itemsize)
    voxels = np.frombuffer(raw, dtype=proxy.dtype, count=count,
                           offset=int(proxy.offset)).reshape(proxy.shape, order="F")
    return nib.volumeutils.apply_read_scaling(voxels, proxy.slope, proxy.inter), img


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
