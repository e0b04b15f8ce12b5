"""BraTS labels and the nested regions evaluated by the challenge.

Labels (BraTS 2020): 0 background, 1 necrotic / non-enhancing core, 2 edema, 4 enhancing.
Regions: WT (whole tumor) = {1, 2, 4}, TC (tumor core) = {1, 4}, ET (enhancing) = {4}.
"""

from __future__ import annotations

import numpy as np

#: The internal label values, ascending (also the softmax class order).
LABELS: tuple[int, ...] = (0, 1, 2, 4)
REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
REGION_LABELS: dict[str, tuple[int, ...]] = {"WT": (1, 2, 4), "TC": (1, 4), "ET": (4,)}


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
