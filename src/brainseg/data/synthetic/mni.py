"""The MNI152 templates the synthetic anatomy is built from, read once per process.

nilearn's packaged 1 mm MNI152 brain mask, grey- and white-matter probabilities, their
bounding box, and the candidate lesion centres (deep supratentorial white matter), for
the anatomy and the lesion-planning phases alike.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage as ndi

from brainseg.data.boxes import bounding_box
from brainseg.data.synthetic.common import F32
from brainseg.errors import BrainsegError

MNI_MIDLINE_X = 98.0  # MNI152 1 mm voxel index of the mid-sagittal plane (world x = 0)
_MNI_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
              "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
              "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
_MNI_MASK_THRESHOLD = 0.2  # nilearn's load_mni152_brain_mask default


def _nilearn_data() -> Path:
    """nilearn's packaged data folder, found without importing nilearn (seconds of start-up)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise BrainsegError("nilearn is not installed: the synthetic cohort needs its MNI152 "
                            "templates (pip install nilearn)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"


def _rescaled(name: str) -> np.ndarray:
    data = np.asarray(nib.load(_nilearn_data() / _MNI_FILES[name]).dataobj).astype(F32)
    data /= data.max()
    return data


@functools.lru_cache(maxsize=1)
def templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load the MNI152 1 mm brain mask, GM and WM probabilities once per process.

    The values of nilearn's `load_mni152_brain_mask`, `load_mni152_gm_template` and
    `load_mni152_wm_template` at resolution 1 (each template divided by its maximum, the
    mask the T1 template above 0.2), read from nilearn's packaged files with nibabel:
    importing `nilearn.datasets` would cost every download job seconds of start-up.

    Returns:
        (mask, gm, wm), float32 arrays of shape (197, 233, 189), axes (x, y, z) RAS.
    """
    mask = (_rescaled("t1") > _MNI_MASK_THRESHOLD).astype(np.int8).astype(F32)
    arrays = [mask, _rescaled("gm"), _rescaled("wm")]
    for arr in arrays:
        arr.setflags(write=False)
    return arrays[0], arrays[1], arrays[2]


@functools.lru_cache(maxsize=1)
def mni_bbox() -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (low, high) voxel corners of the MNI152 brain mask, each of shape (3,)."""
    box = bounding_box(templates()[0] > 0.5)
    return np.array([s.start for s in box]), np.array([s.stop - 1 for s in box])


@functools.lru_cache(maxsize=1)
def mni_candidates() -> tuple[np.ndarray, np.ndarray]:
    """Candidate lesion centres: supratentorial white matter of MNI152 on a 2 mm lattice.

    Returns:
        (points (N, 3) in MNI voxel coordinates, depth (N,) distance to the brain border in mm).
    """
    mask, _, wm = templates()
    sub = (slice(None, None, 2),) * 3
    depth = ndi.distance_transform_edt(mask[sub] > 0.5) * 2.0
    lo, hi = mni_bbox()
    upper = np.arange(depth.shape[2])[None, None, :] >= (lo[2] + 0.35 * (hi[2] - lo[2])) / 2
    keep = (depth > 6.0) & (wm[sub] > 0.5) & upper
    return np.argwhere(keep) * 2.0, depth[keep]
