"""The Kaggle LGG layout (`kaggle_3m`): the TIFF slices of one patient, stacked into one volume.

`<root>/<patient>/<patient>_<n>.tif` are axial slices (h, w, 3) uint8 with the channels
0 pre-contrast (T1), 1 FLAIR, 2 post-contrast (T1 with gadolinium); `<patient>_<n>_mask.tif`
(h, w) is the FLAIR abnormality, 0/255 (0/1 accepted). A patient becomes one volume:
slices stacked by n in numeric order along z, each TIFF (row, column) plane stored as
(x, y) = (column, row). The in-plane pixel size comes from the TIFF's resolution tags when
they state it (else 1 mm; the slice distance is never stated: 1 mm). The modalities are
the three it has (t1, t1ce, flair; there is no T2); the mask is the whole tumour only.
`brainseg.data.loading` turns the arrays read here into a subject of the internal layout.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError

log = logging.getLogger(__name__)

#: Internal modality -> channel of the LGG TIFF (0 pre-contrast, 1 FLAIR, 2 post-contrast).
LGG_CHANNELS: dict[str, int] = {"t1": 0, "t1ce": 2, "flair": 1}
#: The modalities of an LGG subject, in `MODALITIES` order.
LGG_MODALITIES: tuple[str, ...] = tuple(m for m in MODALITIES if m in LGG_CHANNELS)
_MM_PER_UNIT = {2: 25.4, 3: 10.0}  # TIFF ResolutionUnit: 2 inch, 3 centimetre


@dataclass(frozen=True)
class LggVolume:
    """The slices of one patient, stacked.

    Attributes:
        image: float32 (3, x, y, n), the `LGG_MODALITIES` in order.
        tumour: bool (x, y, n), the masks.
        pixel_mm: in-plane pixel size in mm.
        first: the first slice's TIFF file.
    """

    image: np.ndarray
    tumour: np.ndarray
    pixel_mm: float
    first: Path


def slice_files(folder: Path) -> list[tuple[int, Path]]:
    """(n, path) of the image slices `<folder name>_<n>.tif` of a patient folder, by n."""
    pattern = re.compile(rf"{re.escape(folder.name)}_(\d+)\.tiff?")
    found = [
        (int(m[1]), p) for p in folder.iterdir() if p.is_file() and (m := pattern.fullmatch(p.name))
    ]
    return sorted(found)


def mask_file(slice_path: Path) -> Path:
    """`<patient>_<n>_mask.tif` of the slice `<patient>_<n>.tif`."""
    return slice_path.with_name(f"{slice_path.stem}_mask{slice_path.suffix}")


def _read(path: Path) -> tuple[np.ndarray, float | None]:
    """The array of a TIFF file and its in-plane pixel size in mm (None when not stated)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            tags = tif.pages[0].tags
            res, unit = tags.get("XResolution"), tags.get("ResolutionUnit")
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
        raise BrainsegError(f"{path}: cannot read TIFF (corrupt or truncated?): {exc}") from exc
    spacing = None
    if res is not None and unit is not None and int(unit.value) in _MM_PER_UNIT:
        num, den = res.value
        if num > 0 and den > 0:
            spacing = _MM_PER_UNIT[int(unit.value)] * den / num
    return data, spacing


def _mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The bool (h, w) tumour mask of one slice, refusing a bad shape or values."""
    if not path.is_file():
        raise BrainsegError(f"{path}: missing mask of slice {path.name[:-9]}.tif")
    data, _ = _read(path)
    if data.ndim == 3 and data.shape[2] in (3, 4) and (data == data[..., :1]).all():
        data = data[..., 0]  # a grey mask saved as RGB(A)
    if data.shape != shape:
        raise BrainsegError(f"{path}: mask shape {data.shape} differs from its slice {shape}")
    values = set(np.unique(data).tolist())
    if not (values <= {0, 255} or values <= {0, 1}):
        raise BrainsegError(f"{path}: mask values {sorted(values)[:10]} are not 0/255 or 0/1")
    return data > 0


def read_patient(folder: Path) -> LggVolume:
    """Read and stack the slices and masks of one patient folder (see the module docstring).

    Raises:
        BrainsegError: naming the file: no slice, an unreadable TIFF, a slice that is not
            (h, w, 3), slices of different shapes, a missing mask, a mask of another shape
            or with values other than 0/255 or 0/1.
    """
    slices = slice_files(folder) if folder.is_dir() else []
    if not slices:
        raise BrainsegError(f"{folder}: no slice {folder.name}_<n>.tif (lgg layout)")
    planes, masks, spacing, shape = [], [], None, None
    for _, path in slices:
        data, pixel = _read(path)
        if data.ndim != 3 or data.shape[2] != 3:
            raise BrainsegError(
                f"{path}: expected a (h, w, 3) slice (pre-contrast, FLAIR, "
                f"post-contrast), got shape {data.shape}"
            )
        if shape is not None and data.shape != shape:
            raise BrainsegError(
                f"{path}: shape {data.shape} differs from {slices[0][1].name} {shape}"
            )
        shape, spacing = data.shape, spacing or pixel
        planes.append(data)
        masks.append(_mask(mask_file(path), data.shape[:2]))
    stack = np.stack(planes, axis=-1)  # (h, w, 3, n)
    image = np.stack([stack[:, :, LGG_CHANNELS[m]].transpose(1, 0, 2) for m in LGG_MODALITIES])
    tumour = np.stack(masks, axis=-1).transpose(1, 0, 2)
    log.debug("%s: %d slices %s, %g mm", folder, len(slices), shape, spacing or 1.0)
    return LggVolume(
        np.ascontiguousarray(image, dtype=np.float32), tumour, spacing or 1.0, slices[0][1]
    )
