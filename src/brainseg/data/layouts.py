"""Source dataset layouts: file names, layout detection, subject listing, label conventions.

Internal convention: modalities in `MODALITIES` order (t1, t1ce, t2, flair), labels 0 background,
1 necrotic / non-enhancing core, 2 edema, 4 enhancing; axis order (x, y, z) as in nibabel
(`brainseg.data.loading` reads a subject of any layout into it).
Layouts: brats2020 (also 2021) `<root>/<id>/<id>_{t1,t1ce,t2,flair,seg}.nii[.gz]`; brats2023
`<root>/<id>/<id>-{t1n,t1c,t2w,t2f,seg}.nii[.gz]`; decathlon (MSD Task01) `imagesTr/<id>.nii.gz`
4D (x, y, z, 4) FLAIR/T1w/T1gd/T2w + `labelsTr/<id>.nii.gz`, unlabelled `imagesTs/`, and
`dataset.json`; lgg (Kaggle LGG, `kaggle_3m`) `<root>/<id>/<id>_<n>.tif` + `<id>_<n>_mask.tif`,
3-channel slices stacked into one volume per patient (`brainseg.data.lgg`). Hidden entries
are skipped everywhere (`brainseg.io.listing.visible`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np

from brainseg.data.labels import LABELS, header_marks
from brainseg.data.lgg import slice_files
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.listing import subject_folders, visible
from brainseg.io.nifti import DECODE_ERRORS, SUFFIXES, find_nifti

log = logging.getLogger(__name__)

#: The layouts of NIfTI files, each with its label table.
NIFTI_LAYOUTS: tuple[str, ...] = ("brats2020", "brats2023", "decathlon")
LAYOUTS: tuple[str, ...] = (*NIFTI_LAYOUTS, "lgg")  # lgg: TIFF slices, binary masks

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
    "unknown layout (expected BraTS 2020/2021, BraTS 2023, Decathlon Task01 or Kaggle LGG); "
    "set download.layout"
)


def check_layout(layout: str) -> dict[int, int]:
    """Return the label table of `layout` (lgg: none, its masks are binary), refusing
    unknown names."""
    if layout not in LAYOUTS:
        raise BrainsegError(f"download.layout: unknown layout '{layout}' (expected one of "
                            f"{', '.join(LAYOUTS)})")
    return LABEL_MAPS.get(layout, {})


def strip_suffix(name: str) -> str | None:
    """`BRATS_001.nii.gz` -> `BRATS_001`; None for a non-NIfTI name."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return None


def dataset_folder(root: Path) -> Path:
    """`root` as a Path, refusing a missing folder (BrainsegError naming it)."""
    root = Path(root)
    if not root.is_dir():
        raise BrainsegError(f"{root}: dataset folder not found")
    return root


def detect_layout(root: Path) -> str:
    """Guess the layout of a source dataset folder.

    Decathlon if `root/imagesTr` is a folder next to `root/dataset.json`; otherwise the file
    names in the first (sorted, non-hidden) subject folder decide: `<id>_t1ce.nii*` means
    brats2020, `<id>-t1c.nii*` means brats2023, `<id>_<n>.tif` means lgg.

    Args:
        root: the dataset folder.

    Returns:
        One of `LAYOUTS`.

    Raises:
        BrainsegError: the folder is missing or matches no layout.
    """
    root = dataset_folder(root)
    if (root / "imagesTr").is_dir():
        if (root / "dataset.json").is_file():
            return "decathlon"
        raise BrainsegError(f"{root}: {UNKNOWN_LAYOUT} (imagesTr/ found but no dataset.json)")
    folders = subject_folders(root)
    if folders:
        first = folders[0]
        for layout, sep in BRATS_SEPARATORS.items():
            key = BRATS_NAMES[layout]["t1ce"]
            if find_nifti(first, f"{first.name}{sep}{key}") is not None:
                log.debug("%s: detected layout %s from %s", root, layout, first.name)
                return layout
        if slice_files(first):
            return "lgg"
    raise BrainsegError(f"{root}: {UNKNOWN_LAYOUT}")


def dataset_subjects(root: Path, layout: str) -> list[str]:
    """Sorted subject ids of a source dataset, hidden entries skipped.

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.

    Returns:
        The ids; for decathlon both `imagesTr` (labelled) and `imagesTs` (unlabelled) subjects.

    Raises:
        BrainsegError: unknown layout, missing folder or no subject at all.
    """
    check_layout(layout)
    root = dataset_folder(root)
    if layout == "decathlon":
        ids: set[str] = set()
        for part in ("imagesTr", "imagesTs"):
            folder = root / part
            if folder.is_dir():
                names = (strip_suffix(p.name) for p in folder.iterdir() if visible(p))
                ids.update(n for n in names if n)
    else:
        ids = {p.name for p in subject_folders(root)}
    if not ids:
        raise BrainsegError(f"{root}: no subjects found for layout {layout}")
    for subject in sorted(ids):
        check_subject_id(subject, root)
    return sorted(ids)


# What a subject id may hold: the pipeline names files after it, and Snakemake's `subject`
# wildcard (workflow/rules/common.smk) matches exactly this.
SUBJECT_ID = re.compile(r"[A-Za-z0-9._-]+")


def check_subject_id(subject: str, root: Path) -> None:
    """Refuse an id with spaces, non-ASCII letters, shell or control characters.

    Raises:
        BrainsegError: naming the dataset folder `root` and the id (quoted, escaped).
    """
    if not SUBJECT_ID.fullmatch(subject):
        raise BrainsegError(f"{root}: subject id {subject!r} has characters other than ASCII "
                            "letters, digits, '.', '_' and '-' (the pipeline names its files "
                            "and jobs after it): rename its folder or file")


def check_inside(path: Path, root: Path) -> Path:
    """`path`, refused when it is a link (or under one) that leads outside `root`.

    Raises:
        BrainsegError: naming the link and where it leads.
    """
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise BrainsegError(f"{path}: is a link to a file outside the dataset folder {root} "
                            f"({target}): not read (copy the file in, or point download.path "
                            "at the folder that holds it)")
    return path


def labelled_subjects(root: Path, layout: str) -> list[str]:
    """Sorted ids of the subjects that have a label map (file existence only, nothing decoded).

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.

    Returns:
        The subset of `dataset_subjects(root, layout)` with a seg file (may be empty).

    Raises:
        BrainsegError: as `dataset_subjects`.
    """
    ids = dataset_subjects(root, layout)
    root = Path(root)
    if layout == "decathlon":
        return [s for s in ids if find_nifti(root / "labelsTr", s) is not None]
    if layout == "lgg":  # every slice has its mask (checked when it is loaded)
        return ids
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
    mapping = check_layout(layout)
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
    inverse = _inverse(check_layout(layout))
    out = _map_labels(seg, inverse)
    if out is None:
        bad = _bad_values(seg, inverse)
        raise BrainsegError(f"label values [{_codes(bad[:10], ', ')}] are not internal labels "
                            f"({_codes(LABELS)})")
    return out


def brats_files(root: Path, layout: str, subject: str,
                modalities: tuple[str, ...] | None = MODALITIES,
                confine: bool = False) -> dict[str, Path]:
    """Locate the modality files (required) and the label map (optional) of a BraTS folder.

    Args:
        root, layout, subject: the dataset folder, its layout and the subject id.
        modalities: the modalities required, in `MODALITIES` order (others are not
            looked for); None: those its label map's header records (the internal
            layout, see `recorded_modalities`).
        confine: refuse a file that is a link leading outside `root` (`check_inside`):
            a source dataset, as `brainseg download` reads it.

    Returns:
        Path by key: the modalities in order, then "seg" when there is one.
    """
    folder = root / subject
    if not folder.is_dir():
        raise BrainsegError(f"{folder}: subject folder not found")
    if modalities is None:
        modalities = recorded_modalities(folder)
    sep, names = BRATS_SEPARATORS[layout], BRATS_NAMES[layout]
    files: dict[str, Path] = {}
    for key in (*modalities, "seg"):
        found = find_nifti(folder, f"{subject}{sep}{names[key]}")
        if found is None and key != "seg":
            expected = folder / f"{subject}{sep}{names[key]}.nii.gz"
            raise BrainsegError(f"{expected}: missing modality {names[key]} ({layout})")
        if found is not None:
            files[key] = check_inside(found, root) if confine else found
    return files


def recorded_modalities(folder: Path) -> tuple[str, ...]:
    """The modalities of a subject folder of the internal layout: as its label map's header
    records them (`brainseg.data.labels.mark_header`), else all four."""
    seg = find_nifti(folder, f"{folder.name}_seg")
    if seg is None:
        return MODALITIES
    try:
        header = nib.load(seg).header
    except DECODE_ERRORS as exc:
        raise BrainsegError(f"{seg}: cannot read NIfTI (corrupt or truncated?): {exc}") from exc
    return header_marks(header, str(seg))[0]
