"""Load and validate one subject, from any source layout, into the internal convention.

The internal convention: a float32 image (m, x, y, z) of the subject's m modalities in
`MODALITIES` order (all four, or t1, t1ce, flair for the LGG layout), a uint8 label map
(x, y, z) with labels {0, 1, 2, 4}, axis order (x, y, z) as in nibabel, and the affine and
header of the first modality file.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainseg.data.labels import REGIONS, WT_ONLY, header_marks
from brainseg.data.layouts import (
    DECATHLON_CHANNELS,
    brats_files,
    check_inside,
    check_layout,
    dataset_folder,
    to_internal_labels,
)
from brainseg.data.lgg import LGG_MODALITIES, mask_file, read_patient
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.nifti import DECODE_ERRORS, decode_nifti, find_nifti, load_nifti, voxel_spacing

log = logging.getLogger(__name__)


@dataclass
class Subject:
    """One subject loaded from disk.

    Attributes:
        subject: the subject id.
        image: float32 array (m, x, y, z), the m `modalities` in order; loaded with
            `native=True`, the tuple of the m (x, y, z) volumes as stored instead.
        seg: uint8 array (x, y, z) with BraTS labels {0,1,2,4}, or None without a label map.
        affine: float64 (4, 4) voxel-to-world matrix of the first image (all files share it).
        header: the 3D NIfTI header of the first image.
        files: path of each file, keyed by modality name and "seg" (a Decathlon source
            names its 4D image for the four modalities).
        dtype: on-disk dtype of the images, to write them back unchanged.
        modalities: the modalities of `image`, in `MODALITIES` order (a subset of it for a
            source that lacks some: t1, t1ce, flair for the Kaggle LGG slices).
        regions: the regions its label map annotates: WT, TC, ET, or WT alone (a
            whole-tumour mask stored as label 2; TC and ET are then not available).
    """

    subject: str
    image: np.ndarray
    seg: np.ndarray | None
    affine: np.ndarray
    header: nib.Nifti1Header
    files: dict[str, Path]
    dtype: np.dtype | None = None
    modalities: tuple[str, ...] = MODALITIES
    regions: tuple[str, ...] = REGIONS

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along (x, y, z)."""
        return voxel_spacing(self.header)


def check_same_grid(path: Path, img: nib.Nifti1Image, ref: Path, ref_img: nib.Nifti1Image) -> None:
    """Refuse a file whose (x, y, z) shape or affine differs from the reference file's."""
    shape, ref_shape = tuple(img.shape[:3]), tuple(ref_img.shape[:3])
    if shape != ref_shape:
        raise BrainsegError(f"{path}: shape {shape} differs from {ref.name} {ref_shape}")
    if not np.allclose(img.affine, ref_img.affine, atol=1e-4):
        raise BrainsegError(f"{path}: affine differs from {ref.name}")



def _load_brats(root: Path, layout: str, subject: str, native: bool,
                modalities: tuple[str, ...] | None, confine: bool) -> Subject:
    files = brats_files(root, layout, subject, modalities, confine)
    present = tuple(k for k in files if k != "seg")
    ref = files[present[0]]
    image, volumes, dtypes, ref_img, seg, regions = None, [], [], None, None, REGIONS
    for key in files:
        target = image[present.index(key)] if image is not None and key != "seg" else None
        data, img = load_nifti(files[key], out=target, native=native or key == "seg")
        if ref_img is None:
            ref_img = img
            if not native:
                image = channels_first(len(present), data.shape)
        check_same_grid(files[key], img, ref, ref_img)
        if key == "seg":
            seg = to_internal_labels(data, layout, files[key])
            regions = header_marks(img.header, str(files[key]))[1]
            continue
        if native:
            volumes.append(data)
        elif data is not target:  # the first file, decoded before `image` existed
            image[present.index(key)] = data
        dtypes.append(img.get_data_dtype())
    return Subject(subject=subject, image=tuple(volumes) if native else image, seg=seg,
                   affine=np.asarray(ref_img.affine, dtype=np.float64),
                   header=ref_img.header, files=files, dtype=np.result_type(*dtypes),
                   modalities=present, regions=regions)


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
    out.set_data_shape(shape[:3])
    out.set_zooms(voxel_spacing(header))
    out["pixdim"][4:] = 1.0
    return out


def _load_decathlon(root: Path, subject: str, confine: bool) -> Subject:
    path = find_nifti(root / "imagesTr", subject) or find_nifti(root / "imagesTs", subject)
    if path is None:
        raise BrainsegError(f"{root / 'imagesTr' / (subject + '.nii.gz')}: missing image "
                            "(also not in imagesTs/)")
    label_path = find_nifti(root / "labelsTr", subject)
    for found in (path, label_path) if confine else ():
        if found is not None:
            check_inside(found, root)
    data, img = _load_4d(path)
    image = channels_first(len(MODALITIES), data.shape[:3])
    for c, modality in enumerate(MODALITIES):
        image[c] = data[..., DECATHLON_CHANNELS[modality]]
    files = {m: path for m in MODALITIES}
    seg = None
    if label_path is not None:
        labels, label_img = load_nifti(label_path, native=True)
        check_same_grid(label_path, label_img, path, img)
        seg = to_internal_labels(labels, "decathlon", label_path)
        files["seg"] = label_path
    return Subject(subject=subject, image=image, seg=seg,
                   affine=np.asarray(img.affine, dtype=np.float64),
                   header=_header_3d(img.header, data.shape), files=files,
                   dtype=np.dtype(img.get_data_dtype()))


def _load_lgg(root: Path, subject: str) -> Subject:
    """One patient of the LGG layout (`brainseg.data.lgg`) as a subject.

    The affine is diag(-1, -1, 1) times the voxel size: the voxel axes point to the left,
    posterior and superior, as in the BraTS grid, so a TIFF slice is shown upright as a
    BraTS slice is, and `brainseg predict` reorients the written files like any other.
    The mask becomes label 2 (WT alone); dtype uint8, as stored.
    """
    volume = read_patient(root / subject)
    mm = volume.pixel_mm
    affine = np.diag([-mm, -mm, 1.0, 1.0])
    header = nib.Nifti1Header()
    header.set_data_shape(volume.tumour.shape)
    header.set_zooms((mm, mm, 1.0))
    header.set_xyzt_units("mm")
    header.set_qform(affine, code=1)
    header.set_sform(affine, code=1)
    files = {m: volume.first for m in LGG_MODALITIES}
    files["seg"] = mask_file(volume.first)
    seg = np.where(volume.tumour, 2, 0).astype(np.uint8)
    return Subject(subject=subject, image=volume.image, seg=seg, affine=affine, header=header,
                   files=files, dtype=np.dtype(np.uint8), modalities=LGG_MODALITIES,
                   regions=WT_ONLY)


def load_source_subject(root: Path, layout: str, subject: str, native: bool = False,
                        modalities: tuple[str, ...] | None = MODALITIES,
                        confine: bool = False) -> Subject:
    """Load and validate one subject of a source dataset into the internal convention.

    Checks: every modality file present and readable, 3D (Decathlon images: 4D with 4
    channels; LGG slices: (h, w, 3) with a 0/255 mask each), finite, one shape and affine
    for all files, labels defined by the layout. A missing label map is allowed (seg None).

    Args:
        root: the dataset folder.
        layout: one of `LAYOUTS`.
        subject: a subject id from `dataset_subjects`.
        native: BraTS layouts only: `image` is the tuple of the four (x, y, z) volumes
            as stored (integers: read-only views of the decoded files; floats: float32),
            for readers that only look at them (`extract_slices`, validation): no
            float32 (4, x, y, z) copy is made.
        modalities: BraTS layouts only: the modalities required (default: all four);
            None: those its label map's header records (the internal layout,
            `load_subject`; see `brainseg.data.layouts.recorded_modalities`).
        confine: refuse a file that is a link leading outside `root` (a source dataset:
            `brainseg download`; BraTS and Decathlon layouts).

    Returns:
        The subject, image (m, x, y, z) float32 with its m modalities in `MODALITIES`
        order (`Subject.modalities`: four, or t1, t1ce, flair for lgg), seg (x, y, z) uint8.

    Raises:
        BrainsegError: naming the file and what is wrong.
    """
    check_layout(layout)
    root = dataset_folder(root)
    if layout == "decathlon":
        loaded = _load_decathlon(root, subject, confine)
    elif layout == "lgg":
        loaded = _load_lgg(root, subject)
    else:
        loaded = _load_brats(root, layout, subject, native, modalities, confine)
    log.debug("%s: loaded %s (%s) shape %s", root, subject, layout, loaded.image[0].shape)
    return loaded


def load_subject(subject_dir: str | Path, require_seg: bool = True,
                 native: bool = False) -> Subject:
    """Load and validate one subject folder of the internal (BraTS 2020) layout.

    The subject's modalities and regions are those its label map's header records (no
    record: all four and WT, TC, ET, as for every BraTS source; t1, t1ce, flair and WT for
    the LGG layout; `brainseg.data.labels.header_marks`). Checks: every file present and
    readable, 3D, finite, same shape and affine as the first file, labels within
    {0,1,2,4}: the checks of every source layout, applied to the internal one. With
    `native`, `image` is the tuple of the stored volumes (read-only views, no float32
    copy): for callers that only pass it to `extract_slices`.

    Raises:
        BrainsegError: naming the file and what is wrong.
    """
    subject_dir = Path(subject_dir)
    loaded = load_source_subject(subject_dir.parent, "brats2020", subject_dir.name, native,
                                 modalities=None)
    if require_seg and loaded.seg is None:
        missing = subject_dir / f"{subject_dir.name}_seg.nii.gz"
        raise BrainsegError(f"{missing}: missing label map")
    return loaded
