"""Reorient a volume to the voxel orientation the model was trained in, and back, losslessly.

Only axis permutations and flips (nibabel orientation transforms): nothing is resampled,
so a prediction transformed back lies exactly on the input's voxel grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from nibabel import orientations

from brainseg.errors import BrainsegError

#: Voxel axes of the BraTS grid, which the synthetic cohort shares: voxel (i, j, k) maps to
#: world (-i, 239 - j, k), i.e. i towards Left, j towards Posterior, k towards Superior
#: (axial slices along the last axis). Every model of this project is trained on it.
MODEL_AXCODES: tuple[str, str, str] = ("L", "P", "S")


@dataclass(frozen=True)
class Reorientation:
    """An axis permutation with flips taking a volume to `MODEL_AXCODES`, and its inverse.

    Attributes:
        source: axis codes of the input volume, e.g. ("R", "A", "S").
        forward: nibabel orientation array (3, 2) from the input to the model's axes.
        backward: its inverse, from the model's axes back to the input's.
    """

    source: tuple[str, ...]
    forward: np.ndarray
    backward: np.ndarray

    @classmethod
    def of(cls, affine: np.ndarray, target: tuple[str, ...] = MODEL_AXCODES) -> Reorientation:
        """The reorientation of a volume with voxel-to-world `affine` (4, 4) to `target` axes.

        Raises:
            BrainsegError: the affine has a degenerate (zero or non-finite) axis.
        """
        affine = np.asarray(affine, dtype=np.float64)
        if not np.isfinite(affine).all():
            raise BrainsegError("affine holds NaN or infinite values: orientation unknown")
        src = orientations.io_orientation(affine)
        if np.isnan(src).any():
            raise BrainsegError(f"affine has a zero axis, orientation unknown:\n{affine}")
        dst = orientations.axcodes2ornt(target)
        return cls(
            source=tuple(nib.aff2axcodes(affine)),
            forward=orientations.ornt_transform(src, dst),
            backward=orientations.ornt_transform(dst, src),
        )

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """Volume (x, y, z) in the input's axes -> the same voxels in the model's axes: a
        view (flips and axis swaps only, no copy), in whatever memory order that leaves."""
        return orientations.apply_orientation(volume, self.forward)

    def undo(self, volume: np.ndarray) -> np.ndarray:
        """Volume (x, y, z) in the model's axes -> the input's axes (exact inverse of apply)."""
        return np.ascontiguousarray(orientations.apply_orientation(volume, self.backward))
