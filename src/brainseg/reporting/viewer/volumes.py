"""What the viewer serves besides the files themselves: the error map, the colours, and the
NIfTI check of an uploaded file.

The colours are those of the figures (`reporting.plots.REGION_COLORS` and
`reporting.overlays.ERROR_COLORS`): a label is drawn in the colour of the innermost region
it belongs to (edema: WT, necrosis / non-enhancing core: TC, enhancing: ET), and the error
map in the colours of the overlays' "WT errors" row.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg.errors import BrainsegError
from brainseg.reporting.overlays import ERROR_COLORS, tumour_centre
from brainseg.reporting.plots import REGION_COLORS

#: Internal label -> (region whose colour it takes, legend text).
LABEL_LEGEND: dict[int, tuple[str, str]] = {
    1: ("TC", "necrosis / non-enhancing core"), 2: ("WT", "edema"), 4: ("ET", "enhancing")}
#: Value of the error map -> name in `ERROR_COLORS`.
ERROR_VALUES: dict[int, str] = {1: "true positive", 2: "false positive", 3: "false negative"}
#: Bytes read from the start of a file (inflated) to recognise a NIfTI-1 or NIfTI-2 header.
HEAD_BYTES = 544


def _rgb(colour: str) -> list[int]:
    return [int(colour[i:i + 2], 16) for i in (1, 3, 5)]


def niivue_colormap(colours: dict[int, str], names: dict[int, str]) -> dict[str, list]:
    """A NiiVue label colormap (R, G, B, A, I and labels lists; index 0 transparent)."""
    values = [0, *sorted(colours)]
    rgb = [[0, 0, 0], *(_rgb(colours[v]) for v in values[1:])]
    return {"R": [c[0] for c in rgb], "G": [c[1] for c in rgb], "B": [c[2] for c in rgb],
            "A": [0] + [255] * (len(values) - 1), "I": values,
            "labels": ["", *(names[v] for v in values[1:])]}


def label_colormap() -> dict[str, list]:
    """Colours of the BraTS labels 1, 2, 4 (as the figures draw their regions)."""
    return niivue_colormap({v: REGION_COLORS[r] for v, (r, _) in LABEL_LEGEND.items()},
                           {v: f"{text} ({r})" for v, (r, text) in LABEL_LEGEND.items()})


def error_colormap() -> dict[str, list]:
    """Colours of the whole-tumour error map values 1, 2, 3 (as the overlays draw them)."""
    return niivue_colormap({v: ERROR_COLORS[n] for v, n in ERROR_VALUES.items()},
                           {v: f"WT {n}" for v, n in ERROR_VALUES.items()})


def error_map(reference: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Whole-tumour agreement: 1 true positive, 2 false positive, 3 false negative, 0 else.

    Args:
        reference, prediction: (x, y, z) label maps (any labels; non-zero is tumour).

    Returns:
        (x, y, z) uint8.
    """
    ref, pred = reference > 0, prediction > 0
    out = np.zeros(ref.shape, np.uint8)
    out[ref & pred] = 1
    out[pred & ~ref] = 2
    out[ref & ~pred] = 3
    return out


def error_nifti(reference: Path, prediction: Path) -> bytes:
    """The gzipped NIfTI of `error_map` on the reference's grid (affine and header).

    Raises:
        BrainsegError: a file unreadable, or the two on different shapes.
    """
    try:
        ref_img, pred_img = nib.load(reference), nib.load(prediction)
        ref, pred = np.asanyarray(ref_img.dataobj), np.asanyarray(pred_img.dataobj)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise BrainsegError(f"{reference} or {prediction}: cannot read ({exc})") from exc
    if ref.shape != pred.shape:
        raise BrainsegError(f"{prediction}: shape {pred.shape} differs from the reference "
                            f"{reference} {ref.shape}")
    header = ref_img.header.copy()
    header.set_data_dtype(np.uint8)
    header["cal_min"], header["cal_max"] = 0, 0
    image = nib.Nifti1Image(error_map(ref, pred), ref_img.affine, header)
    image.header.set_slope_inter(1, 0)
    return gzip.compress(image.to_bytes(), compresslevel=1, mtime=0)


def tumour_point(reference: Path | None, prediction: Path) -> list[float] | None:
    """Where the subject page opens, in scanner mm (the prediction's affine): the centre of
    the reference tumour, else of the predicted one, else of the volume
    (`overlays.tumour_centre`); None if unreadable."""
    try:
        pred_img = nib.load(prediction)
        pred = np.asanyarray(pred_img.dataobj)
        ref = np.asanyarray(nib.load(reference).dataobj) if reference else np.zeros_like(pred)
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError):
        return None
    if ref.shape != pred.shape:
        return None
    voxel = np.array([*tumour_centre(ref, pred), 1.0])
    return [float(c) for c in (pred_img.affine @ voxel)[:3]]


def nifti_header_kind(head: bytes) -> str | None:
    """"nifti1" or "nifti2" when `head` (a file's first bytes, inflated) starts a NIfTI
    header: `sizeof_hdr` 348 or 540 in either byte order and the magic of that version."""
    if len(head) < 12:
        return None
    sizes = (struct.unpack("<i", head[:4])[0], struct.unpack(">i", head[:4])[0])
    if len(head) >= 348 and head[344:348] in (b"n+1\0", b"ni1\0") and 348 in sizes:
        return "nifti1"
    if head[4:8] in (b"n+2\0", b"ni2\0") and 540 in sizes:
        return "nifti2"
    return None


def sniff_nifti(path: Path) -> tuple[str, bool] | None:
    """What a file is by its content, whatever its name: (NIfTI version, gzipped) or None.

    A gzip stream is inflated just far enough to read the header.
    """
    with path.open("rb") as fh:
        start = fh.read(HEAD_BYTES)
    gzipped = start[:2] == b"\x1f\x8b"
    if gzipped:
        try:
            with gzip.open(path, "rb") as fh:
                start = fh.read(HEAD_BYTES)
        except (OSError, EOFError, zlib.error):
            return None
    kind = nifti_header_kind(start)
    return None if kind is None else (kind, gzipped)
