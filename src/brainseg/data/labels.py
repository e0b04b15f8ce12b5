"""BraTS labels, the nested regions evaluated by the challenge, and what a label map annotates.

Labels (BraTS 2020): 0 background, 1 necrotic / non-enhancing core, 2 edema, 4 enhancing.
Regions: WT (whole tumor) = {1, 2, 4}, TC (tumor core) = {1, 4}, ET (enhancing) = {4}.

A source may annotate the whole tumour only (the Kaggle LGG masks): its label map holds 2
wherever there is tumour, so that WT = {1, 2, 4} still holds, and TC and ET are not
available. The label map's NIfTI header says so, with the modalities the subject has
(`descrip` = `brainseg regions: WT; modalities: t1 t1ce flair`, see `mark_header`), so
every stage that reads the subject knows it; `data/raw/manifest.csv` states it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError

if TYPE_CHECKING:
    import nibabel as nib

#: The internal label values, ascending (also the softmax class order).
LABELS: tuple[int, ...] = (0, 1, 2, 4)
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}
#: The regions of a whole-tumour-only label map.
WT_ONLY: tuple[str, ...] = ("WT",)
#: How a CSV writes a value that is not available (a region not annotated, a modality
#: the source lacks): never 0. pandas reads it back as NaN.
NOT_AVAILABLE = "n/a"
_MARK = "brainseg "


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Bool mask (same shape as `labels`) of one region of `REGIONS`."""
    return np.isin(labels, REGION_LABELS[region])


def labels_to_regions(labels: np.ndarray) -> np.ndarray:
    """Return a bool array (3, *labels.shape) with the WT, TC, ET masks."""
    return np.stack([region_mask(labels, r) for r in REGIONS])


def regions_to_labels(regions: np.ndarray) -> np.ndarray:
    """Turn region masks (3, ...) back into BraTS labels, enforcing ET ⊂ TC ⊂ WT.

    A voxel is 4 if WT, TC and ET are all set, 1 if WT and TC, 2 if only WT, else 0.
    """
    wt, tc, et = (regions[i].astype(bool) for i in range(3))
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = 2
    labels[wt & tc] = 1
    labels[wt & tc & et] = 4
    return labels


def check_regions(regions: tuple[str, ...] | list[str], source: str) -> tuple[str, ...]:
    """`regions` as a tuple, refusing anything but all of `REGIONS` or WT alone.

    Raises:
        BrainsegError: naming `source` and the regions.
    """
    regions = tuple(regions)
    if regions not in (REGIONS, WT_ONLY):
        raise BrainsegError(
            f"{source}: regions {' '.join(regions) or '(none)'} are not "
            f"{' '.join(REGIONS)} or WT alone"
        )
    return regions


def common_regions(subjects: list[tuple[str, ...]]) -> tuple[str, ...]:
    """The regions that every one of the subjects' region lists holds, in `REGIONS` order."""
    return tuple(r for r in REGIONS if all(r in s for s in subjects))


def mark_header(
    header: nib.Nifti1Header, modalities: tuple[str, ...], regions: tuple[str, ...]
) -> nib.Nifti1Header:
    """A label map's header recording the subject's modalities and the regions it annotates.

    For all four modalities and all three regions (every BraTS subject), `header` itself;
    otherwise a copy whose `descrip` reads `brainseg regions: WT; modalities: t1 t1ce flair`.
    """
    if tuple(modalities) == MODALITIES and tuple(regions) == REGIONS:
        return header
    header = header.copy()
    header["descrip"] = (
        f"{_MARK}regions: {' '.join(regions)}; modalities: {' '.join(modalities)}"
    ).encode()
    return header


def header_marks(
    header: nib.Nifti1Header, source: str = "label map"
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(modalities, regions) as `mark_header` recorded them; all four and all three when
    the header carries no mark (every BraTS label map).

    Raises:
        BrainsegError: naming `source`: a mark with unknown regions, or modalities that are
            not a subset of `MODALITIES` in its order.
    """
    text = bytes(header["descrip"].item()).split(b"\0", 1)[0].decode("ascii", "replace")
    if not text.startswith(_MARK):
        return MODALITIES, REGIONS
    fields = {
        key.strip(): value
        for key, value in (
            part.split(":", 1) for part in text.removeprefix(_MARK).split(";") if ":" in part
        )
    }
    regions = check_regions(tuple(fields.get("regions", "").split()), source)
    modalities = tuple(fields.get("modalities", "").split())
    if not modalities or [m for m in MODALITIES if m in modalities] != list(modalities):
        raise BrainsegError(
            f"{source}: modalities {' '.join(modalities) or '(none)'} in its "
            f"header are not a subset of {' '.join(MODALITIES)} in this order"
        )
    return modalities, regions
