"""Source dataset layouts read into the internal convention.

Internal convention: modalities in `MODALITIES` order (t1, t1ce, t2, flair), labels 0 background,
1 necrotic / non-enhancing core, 2 edema, 4 enhancing; axis order (x, y, z) as in nibabel.
Layouts: brats2020 (also 2021) `<root>/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii[.gz]`; brats2023
`<root>/<id>/<id>-{t1n,t1c,t2w,t2f,seg}.nii[.gz]`; decathlon (MSD Task01) `imagesTr/<id>.nii.gz`
4D (x, y, z, 4) FLAIR/T1w/T1gd/T2w + `labelsTr/<id>.nii.gz`, unlabelled `imagesTs/`, and
`dataset.json`. Hidden entries (`.*`, macOS `._*` junk) are skipped everywhere.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from brainseg.errors import BrainsegError
from brainseg.io.nifti import (
    DECODE_ERRORS,
    LABEL_VALUES,
    MODALITIES,
    SUFFIXES,
    Subject,
    decode_nifti,
    find_nifti,
    load_nifti,
)

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("brats2020", "brats2023", "decathlon")

#: Source label value -> internal label value, one table per layout (a bijection onto {0,1,2,4}).
LABEL_MAPS: dict[str, dict[int, int]] = {
    "brats2020": {0: 0, 1: 1, 2: 2, 4: 4},
    "brats2023": {0: 0, 1: 1, 2: 2, 3: 4},
    "decathlon": {0: 0, 1: 2, 2: 1, 3: 4},
}

#: File-name key of each internal modality, and the separator between id and key.
BRATS_NAMES: dict[str, dict[str, str]] = {
    "brats2020": {"t1": "t1", "t1ce": "t1ce", "t2": "t2", "flair": "flair", "seg": "seg"},
    "brats2023": {"t1": "t1n", "t1ce": "t1c", "t2": "t2w", "flair": "t2f", "seg": "seg"},
}
BRATS_SEPARATORS: dict[str, str] = {"brats2020": "_", "brats2023": "-"}

#: Decathlon 4D channel holding each internal modality (channels: 0 FLAIR, 1 T1w, 2 T1gd, 3 T2w).
DECATHLON_CHANNELS: dict[str, int] = {"t1": 1, "t1ce": 2, "t2": 3, "flair": 0}

UNKNOWN_LAYOUT = (
    "unknown layout (expected BraTS 2020/2021, BraTS 2023 or Decathlon Task01); "
    "set download.layout"
)


SourceSubject = Subject  # one subject record for every layout (see brainseg.io.nifti)


def _check_layout(layout: str) -> dict[int, int]:
    """Return the label table of `layout`, refusing unknown names."""
    if layout not in LABEL_MAPS:
        raise BrainsegError(f"download.layout: unknown layout '{layout}' (expected one of "
                            f"{', '.join(LAYOUTS)})")
    return LABEL_MAPS[layout]


def visible(path: Path) -> bool:
    """False for hidden entries (also macOS `._*` resource forks) and `__MACOSX` folders."""
    return not path.name.startswith(".") and path.name != "__MACOSX"


def strip_suffix(name: str) -> str | None:
    """`BRATS_001.nii.gz` -> `BRATS_001`; None for a non-NIfTI name."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def _require_dir(root: Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise BrainsegError(f"{root}: dataset folder not found")
    return root


def detect_layout(root: Path) -> str:
    """Guess the layout of a source dataset folder.

    Decathlon if `root/imagesTr` is a folder next to `root/dataset.json`; otherwise the file
    names in the first (sorted, non-hidden) subject folder decide: `<id>_t1ce.nii*` means
    brats2020, `<id>-t1c.nii*` means brats2023.

    Args:
        root: the dataset folder.

    Returns:
        One of `LAYOUTS`.

    Raises:
        BrainsegError: the folder is missing or matches no layout.
    """
    root = _require_dir(root)
    if (root / "imagesTr").is_dir():
        if (root / "dataset.json").is_file():
            return "decathlon"
        raise BrainsegError(f"{root}: {UNKNOWN_LAYOUT} (imagesTr/ found but no dataset.json)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and visible(p))
    if folders:
        first = folders[0]
        for layout, sep in BRATS_SEPARATORS.items():
            key = BRATS_NAMES[layout]["t1ce"]
            if find_nifti(first, f"{first.name}{sep}{key}") is not None:
                log.debug("%s: detected layout %s from %s", root, layout, first.name)
                return layout
    raise BrainsegError(f"{root}: {UNKNOWN_LAYOUT}")


def list_subjects(root: Path, layout: str) -> list[str]:
    """Sorted subject ids of a source dataset, hidden entries skipped.

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.

    Returns:
        The ids; for decathlon both `imagesTr` (labelled) and `imagesTs` (unlabelled) subjects.

    Raises:
        BrainsegError: unknown layout, missing folder or no subject at all.
    """
    _check_layout(layout)
    root = _require_dir(root)
    if layout == "decathlon":
        ids: set[str] = set()
        for part in ("imagesTr", "imagesTs"):
            folder = root / part
            if folder.is_dir():
                names = (strip_suffix(p.name) for p in folder.iterdir() if visible(p))
                ids.update(n for n in names if n)
    else:
        ids = {p.name for p in root.iterdir() if p.is_dir() and visible(p)}
    if not ids:
        raise BrainsegError(f"{root}: no subjects found for layout {layout}")
    return sorted(ids)


def labelled_subjects(root: Path, layout: str) -> list[str]:
    """Sorted ids of the subjects that have a label map (file existence only, nothing decoded).

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.

    Returns:
        The subset of `list_subjects(root, layout)` with a seg file (may be empty).

    Raises:
        BrainsegError: as `list_subjects`.
    """
    ids = list_subjects(root, layout)
    root = Path(root)
    if layout == "decathlon":
        return [s for s in ids if find_nifti(root / "labelsTr", s) is not None]
    sep = BRATS_SEPARATORS[layout]
    return [s for s in ids if find_nifti(root / s, f"{s}{sep}seg") is not None]


def _codes(values, sep: str = ",") -> str:
    return sep.join(f"{v:g}" for v in sorted(values))


_UNKNOWN = 255  # what the look-up table gives a value the mapping does not define


def _lookup_table(mapping: dict[int, int]) -> np.ndarray:
    """256-entry uint8 table with `lut[source] = target`, every other entry `_UNKNOWN`."""
    lut = np.full(256, _UNKNOWN, dtype=np.uint8)
    for source, target in mapping.items():
        if 0 <= source <= 255:
            lut[source] = target
    return lut


def _inverse(mapping: dict[int, int]) -> dict[int, int]:
    inverse = {target: source for source, target in mapping.items()}
    if len(inverse) != len(mapping):
        raise BrainsegError(f"label table {mapping} is not one-to-one")
    return inverse


def _map_labels(seg: np.ndarray, mapping: dict[int, int]) -> np.ndarray | None:
    """`seg` mapped through `mapping` (uint8, same shape and memory order); None when some
    value of `seg` is not a key of `mapping`.

    Integer maps within 0..255 take one table look-up (OpenCV's, in memory order: nibabel's
    arrays are Fortran-ordered), with no sort and no copy to a wider type; anything else
    (floats, wide values) is checked value by value first.
    """
    seg = np.asarray(seg)
    if not seg.size:
        return np.zeros(seg.shape, dtype=np.uint8)
    order = "F" if seg.flags.f_contiguous and not seg.flags.c_contiguous else "C"
    flat = seg.ravel(order=order)
    if seg.dtype.kind in "iub" and flat.min() >= 0 and flat.max() <= 255:
        out = cv2.LUT(flat.astype(np.uint8, copy=False), _lookup_table(mapping)).reshape(-1)
        if out.max() == _UNKNOWN:
            return None
    elif _bad_values(seg, mapping):
        return None
    else:
        out = _lookup_table(mapping)[flat.astype(np.uint8)]
    return out.reshape(seg.shape, order=order)


def _bad_values(seg: np.ndarray, mapping: dict[int, int]) -> list[float]:
    """The values of `seg` that `mapping` does not define (sorted; empty when all are)."""
    return [v for v in np.unique(np.asarray(seg).ravel(order="K")).tolist() if v not in mapping]


def to_internal_labels(seg: np.ndarray, layout: str, path: Path) -> np.ndarray:
    """Map a label map from the layout's convention to the internal one.

    Args:
        seg: label map (x, y, z), any numeric dtype, values in the layout's convention.
        layout: one of `LAYOUTS`.
        path: the source file, named in errors.

    Returns:
        uint8 array (x, y, z) with internal labels {0,1,2,4}.

    Raises:
        BrainsegError: unknown layout, or values the layout does not define.
    """
    mapping = _check_layout(layout)
    out = _map_labels(seg, mapping)
    if out is None:
        bad = _bad_values(seg, mapping)
        raise BrainsegError(f"{path}: label values [{_codes(bad[:10], ', ')}] are not defined "
                            f"by layout {layout} ({_codes(mapping)})")
    return out


def from_internal_labels(seg: np.ndarray, layout: str) -> np.ndarray:
    """Map an internal label map (values {0,1,2,4}) to the layout's own convention.

    Args:
        seg: label map (x, y, z) with internal labels.
        layout: one of `LAYOUTS`.

    Returns:
        uint8 array (x, y, z) in the layout's convention.

    Raises:
        BrainsegError: unknown layout, or values outside the internal labels.
    """
    inverse = _inverse(_check_layout(layout))
    out = _map_labels(seg, inverse)
    if out is None:
        bad = _bad_values(seg, inverse)
        raise BrainsegError(f"label values [{_codes(bad[:10], ', ')}] are not internal labels "
                            f"({_codes(LABEL_VALUES)})")
    return out


def check_same_grid(path: Path, img: nib.Nifti1Image, ref: Path, ref_img: nib.Nifti1Image) -> None:
    """Refuse a file whose (x, y, z) shape or affine differs from the reference file's."""
    shape, ref_shape = tuple(img.shape[:3]), tuple(ref_img.shape[:3])
    if shape != ref_shape:
        raise BrainsegError(f"{path}: shape {shape} differs from {ref.name} {ref_shape}")
    if not np.allclose(img.affine, ref_img.affine, atol=1e-4):
        raise BrainsegError(f"{path}: affine differs from {ref.name}")


def brats_files(root: Path, layout: str, subject: str) -> dict[str, Path]:
    """Locate the modality files (required) and the label map (optional) of a BraTS folder."""
    folder = root / subject
    if not folder.is_dir():
        raise BrainsegError(f"{folder}: subject folder not found")
    sep, names = BRATS_SEPARATORS[layout], BRATS_NAMES[layout]
    files: dict[str, Path] = {}
    for key in (*MODALITIES, "seg"):
        found = find_nifti(folder, f"{subject}{sep}{names[key]}")
        if found is None and key != "seg":
            expected = folder / f"{subject}{sep}{names[key]}.nii.gz"
            raise BrainsegError(f"{expected}: missing modality {names[key]} ({layout})")
        if found is not None:
            files[key] = found
    return files


def _load_brats(root: Path, layout: str, subject: str, native: bool = False) -> SourceSubject:
    files = brats_files(root, layout, subject)
    ref = files[MODALITIES[0]]
    image, volumes, dtypes, ref_img, seg = None, [], [], None, None
    for key in (*MODALITIES, "seg"):
        if key not in files:
            continue
        target = image[MODALITIES.index(key)] if image is not None and key != "seg" else None
        data, img = load_nifti(files[key], out=target, native=native or key == "seg")
        if ref_img is None:
            ref_img = img
            if not native:
                image = channels_first(len(MODALITIES), data.shape)
        check_same_grid(files[key], img, ref, ref_img)
        if key == "seg":
            seg = to_internal_labels(data, layout, files[key])
            continue
        if native:
            volumes.append(data)
        elif data is not target:  # the first file, decoded before `image` existed
            image[MODALITIES.index(key)] = data
        dtypes.append(img.get_data_dtype())
    return SourceSubject(subject=subject, image=tuple(volumes) if native else image, seg=seg,
                         affine=np.asarray(ref_img.affine, dtype=np.float64),
                         header=ref_img.header, files=files, dtype=np.result_type(*dtypes))


def channels_first(channels: int, shape: tuple[int, ...]) -> np.ndarray:
    """An empty float32 (channels, x, y, z) array whose volumes keep nibabel's memory order.

    Each `image[c]` is one Fortran-ordered block (axial slices contiguous), so filling it
    from a decoded volume is a straight copy, not the transpose `np.stack` would make.
    """
    return np.empty((*shape, channels), dtype=np.float32, order="F").transpose(3, 0, 1, 2)


def _load_4d(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """Decode a Decathlon 4D image (x, y, z, 4) into float32, refusing bad shape or values."""
    try:
        raw, img = decode_nifti(path)
        data = raw.astype(np.float32)
    except DECODE_ERRORS as exc:
        raise BrainsegError(f"{path}: cannot read NIfTI (corrupt or truncated?): {exc}") from exc
    if data.ndim != 4 or data.shape[3] != len(MODALITIES):
        raise BrainsegError(f"{path}: expected a 4D image (x, y, z, 4) with channels FLAIR, T1w, "
                            f"T1gd, T2w, got shape {data.shape}")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).sum())
        raise BrainsegError(f"{path}: {bad} voxels are NaN or infinite")
    return data, img


def _header_3d(header: nib.Nifti1Header, shape: tuple[int, ...]) -> nib.Nifti1Header:
    """A copy of a 4D header describing one (x, y, z) volume of it."""
    out = header.copy()
    zooms = header.get_zooms()[:3]
    out.set_data_shape(shape[:3])
    out.set_zooms(zooms)
    out["pixdim"][4:] = 1.0
    return out


def _load_decathlon(root: Path, subject: str) -> SourceSubject:
    path = find_nifti(root / "imagesTr", subject) or find_nifti(root / "imagesTs", subject)
    if path is None:
        raise BrainsegError(f"{root / 'imagesTr' / (subject + '.nii.gz')}: missing image "
                            "(also not in imagesTs/)")
    data, img = _load_4d(path)
    image = channels_first(len(MODALITIES), data.shape[:3])
    for c, modality in enumerate(MODALITIES):
        image[c] = data[..., DECATHLON_CHANNELS[modality]]
    files = {m: path for m in MODALITIES}
    seg = None
    label_path = find_nifti(root / "labelsTr", subject)
    if label_path is not None:
        labels, label_img = load_nifti(label_path, native=True)
        check_same_grid(label_path, label_img, path, img)
        seg = to_internal_labels(labels, "decathlon", label_path)
        files["seg"] = label_path
    return SourceSubject(subject=subject, image=image, seg=seg,
                         affine=np.asarray(img.affine, dtype=np.float64),
                         header=_header_3d(img.header, data.shape), files=files,
                         dtype=np.dtype(img.get_data_dtype()))


def load_source_subject(root: Path, layout: str, subject: str,
                        native: bool = False) -> SourceSubject:
    """Load and validate one subject of a source dataset into the internal convention.

    Checks: every modality file present and readable, 3D (Decathlon images: 4D with 4
    channels), finite, one shape and affine for all files, labels defined by the layout.
    A missing label map is allowed (seg None).

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.
        subject: a subject id from `list_subjects`.
        native: BraTS layouts only: `image` is the tuple of the four (x, y, z) volumes
            as stored (integers: read-only views of the decoded files; floats: float32),
            for readers that only look at them (`extract_slices`, validation): no
            float32 (4, x, y, z) copy is made.

    Returns:
        The subject, image (4, x, y, z) float32 in `MODALITIES` order, seg (x, y, z) uint8.

    Raises:
        BrainsegError: naming the file and what is wrong.
    """
    _check_layout(layout)
    root = _require_dir(root)
    if layout == "decathlon":
        loaded = _load_decathlon(root, subject)
    else:
        loaded = _load_brats(root, layout, subject, native)
    log.debug("%s: loaded %s (%s) shape %s", root, subject, layout, loaded.image[0].shape)
    return loaded
