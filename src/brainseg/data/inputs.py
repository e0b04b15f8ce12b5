"""The modality files of a new subject to segment: found by name, or given in order.

Names recognised (file name without `.nii`/`.nii.gz`, any case):
- BraTS 2020/2021: `<id>_t1`, `<id>_t1ce`, `<id>_t2`, `<id>_flair` (or bare `t1`, `t1ce`, ...);
- BraTS 2023 and later: `<id>-t1n`, `<id>-t1c`, `<id>-t2w`, `<id>-t2f` (or bare `t1n`, ...).
Label maps (`_seg`, `-seg`) and other files are ignored: prediction needs no label map.
Four files given on the command line are taken by name when every name says a distinct
modality, else in the documented order t1, t1ce, t2, flair. A model trained on fewer
modalities (t1, t1ce, flair for the LGG layout) asks for those only (`modalities`): the
others are then ignored, and files given in order follow its order.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg.data.layouts import BRATS_NAMES, BRATS_SEPARATORS, strip_suffix
from brainseg.data.loading import check_same_grid
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.listing import visible
from brainseg.io.nifti import load_nifti

log = logging.getLogger(__name__)

#: Layouts whose file names `predict` recognises (their labels are written back as such).
NAMED_LAYOUTS: tuple[str, ...] = ("brats2020", "brats2023")


@dataclass(frozen=True)
class SubjectFiles:
    """The modality files of one subject and the layout whose convention its output uses.

    Attributes:
        subject: the subject id (the folder's name, or the T1 file's name without suffix).
        files: path of each modality asked for, keyed and in their order (`MODALITIES`
            by default).
        layout: "brats2020" or "brats2023".
    """

    subject: str
    files: dict[str, Path]
    layout: str


def _expected(layout: str, modalities: tuple[str, ...] = MODALITIES) -> str:
    sep, names = BRATS_SEPARATORS[layout], BRATS_NAMES[layout]
    return ", ".join(f"*{sep}{names[m]}" for m in modalities)


def modality_of(path: Path) -> tuple[str, str] | None:
    """(layout, internal modality) said by a file name, or None.

    >>> modality_of(Path("BraTS20_Training_001_t1ce.nii"))
    ('brats2020', 't1ce')
    >>> modality_of(Path("BraTS-GLI-00000-000-t2f.nii.gz"))
    ('brats2023', 'flair')
    """
    stem = strip_suffix(path.name.lower())
    if stem is None:
        return None
    for layout in NAMED_LAYOUTS:
        sep = BRATS_SEPARATORS[layout]
        for key in MODALITIES:
            name = BRATS_NAMES[layout][key]
            if stem == name or stem.endswith(sep + name):
                return layout, key
    return None


def folder_files(folder: Path, layout: str = "auto",
                 modalities: tuple[str, ...] = MODALITIES) -> SubjectFiles:
    """Find the modality files of a subject folder.

    Args:
        folder: a folder holding one subject's NIfTI files.
        layout: "auto" (the naming that matches most files; BraTS 2020 on a tie),
            "brats2020" or "brats2023".
        modalities: the modalities needed (the model's), in its order.

    Returns:
        The files and the layout.

    Raises:
        BrainsegError: naming the folder and the missing (or doubled) modality.
    """
    found: dict[str, dict[str, list[Path]]] = {name: {} for name in NAMED_LAYOUTS}
    for path in sorted(folder.iterdir()):
        hit = modality_of(path) if path.is_file() and visible(path) else None
        if hit is not None:
            found[hit[0]].setdefault(hit[1], []).append(path)
    if layout == "auto":
        layout = max(NAMED_LAYOUTS, key=lambda name: len(found[name]))
        if not found[layout]:
            raise BrainsegError(
                f"{folder}: no modality file found (expected BraTS 2020/2021 names "
                f"{_expected('brats2020')} or BraTS 2023 names {_expected('brats2023')}, "
                ".nii or .nii.gz)")
    hits, names = found[layout], BRATS_NAMES[layout]
    missing = [names[m] for m in modalities if m not in hits]
    if missing:
        raise BrainsegError(f"{folder}: missing modality {', '.join(missing)} ({layout} names: "
                            f"expected {_expected(layout, modalities)})")
    for key in modalities:
        if len(hits[key]) > 1:
            raise BrainsegError(f"{folder}: several files for modality {names[key]}: "
                                f"{', '.join(p.name for p in hits[key])}")
    return SubjectFiles(folder.name, {m: hits[m][0] for m in modalities}, layout)


def listed_files(paths: list[Path], layout: str = "auto",
                 modalities: tuple[str, ...] = MODALITIES) -> SubjectFiles:
    """One file per modality, given in the order of `modalities` (t1, t1ce, t2, flair), or
    in any order with modality names.

    Args:
        paths: one NIfTI file per modality.
        layout: "auto" (the naming of the files; BraTS 2020 when they carry none),
            "brats2020" or "brats2023".
        modalities: the modalities needed (the model's), in its order.

    Returns:
        The files and the layout.

    Raises:
        BrainsegError: not one file per modality, a file missing, or a name that
            contradicts its place.
    """
    order = " ".join(modalities)
    if len(paths) != len(modalities):
        raise BrainsegError(f"--input: expected a folder or {len(modalities)} files ({order}), "
                            f"got {len(paths)} paths")
    for path in paths:
        if not path.is_file():
            raise BrainsegError(f"{path}: input file not found")
    hits = [modality_of(p) for p in paths]
    keys = [hit[1] if hit else None for hit in hits]
    if None not in keys and set(keys) == set(modalities):
        files = dict(zip(keys, paths, strict=True))
    else:
        for place, (path, key, expected) in enumerate(zip(paths, keys, modalities, strict=True)):
            if key is not None and key != expected:
                raise BrainsegError(f"{path}: its name says {key} but file {place + 1} of "
                                    f"--input must be {expected} (order: {order})")
        files = dict(zip(modalities, paths, strict=True))
    named = {hit[0] for hit in hits if hit}
    if layout == "auto":
        layout = named.pop() if len(named) == 1 else "brats2020"
    first = modalities[0]
    subject = strip_suffix(files[first].name) or files[first].name
    sep = BRATS_SEPARATORS[layout]
    suffix = f"{sep}{BRATS_NAMES[layout][first]}"
    subject = subject[: -len(suffix)] if subject.lower().endswith(suffix) else subject
    return SubjectFiles(subject, {m: files[m] for m in modalities}, layout)


def load_modalities(inputs: SubjectFiles, native: bool = False
                    ) -> tuple[np.ndarray | tuple[np.ndarray, ...], nib.Nifti1Image]:
    """Read the modality files, checking they share one grid.

    Returns:
        The image float32 (m, x, y, z) in the order of `inputs.files` (with `native`: the
        tuple of the m (x, y, z) volumes as decoded, integer data in its own dtype, no
        stacked copy; what `extract_slices` reads), and the first file's image (its affine
        and header describe the grid the prediction is written on).

    Raises:
        BrainsegError: a file unreadable, not 3D, not finite, or on another grid than the first.
    """
    keys = list(inputs.files)
    ref_path = inputs.files[keys[0]]
    volumes, ref_img = [], None
    for key in keys:
        data, img = load_nifti(inputs.files[key], native=native)
        if ref_img is None:
            ref_img = img
        check_same_grid(inputs.files[key], img, ref_path, ref_img)
        volumes.append(data)
    assert ref_img is not None
    return (tuple(volumes) if native else np.stack(volumes)), ref_img
