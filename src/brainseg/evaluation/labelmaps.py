"""Region probabilities to BraTS label maps: thresholds, clean-up, nesting, settings file.

`apply` thresholds each region, nests them (ET ⊂ TC ⊂ WT), removes small connected
components, converts to labels and turns a tiny enhancing tumour into necrosis, in the
order and with the conventions written once in docs/conventions.md ("Post-processing").
Flip test-time augmentation (`flip_tta`) acts earlier, on the probabilities
(`brainseg.evaluation.inference.predict_probabilities`); the settings carry it so that
one file says how to predict. The `postprocess` stage
(`brainseg.evaluation.postprocess`) chooses the settings; `evaluate` and `predict` apply them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brainseg.data.labels import REGIONS, regions_to_labels
from brainseg.errors import BrainsegError
from brainseg.io.atomic import write_text

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)  # 26-connectivity in 3D
KEYS = ("thresholds", "min_component_mm3", "et_to_necrosis_mm3", "flip_tta")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _per_region(name: str, value: Any) -> dict[str, float]:
    """A {WT, TC, ET} mapping of numbers (one number: the same for every region)."""
    if _is_number(value):
        return {r: float(value) for r in REGIONS}
    if not isinstance(value, Mapping) or set(value) != set(REGIONS):
        raise BrainsegError(f"'{name}' must be a number or a mapping with keys "
                            f"{', '.join(REGIONS)}, got {value!r}")
    bad = {r: v for r, v in value.items() if not _is_number(v)}
    if bad:
        raise BrainsegError(f"'{name}' must hold numbers, got {bad}")
    return {r: float(value[r]) for r in REGIONS}


@dataclass(frozen=True)
class PostprocessSettings:
    """How probabilities become labels (see the module docstring for the order).

    Attributes:
        thresholds: probability threshold per region, each in (0, 1).
        min_component_mm3: per region (or one number for all), connected components
            smaller than this volume in mm³ are removed; 0 keeps everything.
        et_to_necrosis_mm3: a predicted ET whose total volume is below this becomes
            necrosis; 0 never does.
        flip_tta: average with the prediction of the left-right mirrored slices.
    """

    thresholds: Mapping[str, float] = field(default_factory=lambda: {r: 0.5 for r in REGIONS})
    min_component_mm3: Mapping[str, float] | float = 0.0
    et_to_necrosis_mm3: float = 0.0
    flip_tta: bool = False

    def __post_init__(self) -> None:
        thresholds = _per_region("thresholds", self.thresholds)
        outside = {r: t for r, t in thresholds.items() if not 0 < t < 1}
        if outside:
            raise BrainsegError(f"'thresholds' must lie strictly between 0 and 1, got {outside}")
        volumes = _per_region("min_component_mm3", self.min_component_mm3)
        negative = {r: v for r, v in volumes.items() if v < 0}
        if negative:
            raise BrainsegError(f"'min_component_mm3' must be >= 0, got {negative}")
        if not _is_number(self.et_to_necrosis_mm3) or self.et_to_necrosis_mm3 < 0:
            raise BrainsegError(
                f"'et_to_necrosis_mm3' must be a number >= 0, got {self.et_to_necrosis_mm3!r}")
        if not isinstance(self.flip_tta, bool):
            raise BrainsegError(f"'flip_tta' must be true or false, got {self.flip_tta!r}")
        object.__setattr__(self, "thresholds", thresholds)
        object.__setattr__(self, "min_component_mm3", volumes)
        object.__setattr__(self, "et_to_necrosis_mm3", float(self.et_to_necrosis_mm3))

    @classmethod
    def uniform(cls, threshold: float) -> PostprocessSettings:
        """One threshold for every region and nothing else: the plain prediction."""
        return cls(thresholds={r: threshold for r in REGIONS})

    def with_threshold(self, region: str, threshold: float) -> PostprocessSettings:
        """A copy with one region's threshold changed."""
        return dataclasses.replace(self, thresholds={**self.thresholds, region: threshold})

    def with_min_component(self, region: str, volume_mm3: float) -> PostprocessSettings:
        """A copy with one region's minimum component volume changed."""
        volumes = {**self.min_component_mm3, region: volume_mm3}  # type: ignore[dict-item]
        return dataclasses.replace(self, min_component_mm3=volumes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict with every key (volumes per region)."""
        return {
            "thresholds": dict(self.thresholds),
            "min_component_mm3": dict(self.min_component_mm3),  # type: ignore[arg-type]
            "et_to_necrosis_mm3": self.et_to_necrosis_mm3,
            "flip_tta": self.flip_tta,
        }

    @classmethod
    def from_dict(cls, data: Any, source: str = "settings") -> PostprocessSettings:
        """Build from a dict with exactly the keys of `to_dict`.

        Raises:
            BrainsegError: naming `source` and the missing, unknown or bad key.
        """
        if not isinstance(data, Mapping):
            raise BrainsegError(f"{source}: expected a JSON object, got {type(data).__name__}")
        missing = [k for k in KEYS if k not in data]
        unknown = sorted(set(data) - set(KEYS))
        if missing or unknown:
            raise BrainsegError(f"{source}: missing keys {missing}, unknown keys {unknown} "
                                f"(expected {', '.join(KEYS)})")
        try:
            return cls(**{k: data[k] for k in KEYS})
        except BrainsegError as exc:
            raise BrainsegError(f"{source}: {exc}") from exc


def write_settings(path: str | Path, settings: PostprocessSettings) -> None:
    """Write the settings as JSON, atomically."""
    write_text(path, json.dumps(settings.to_dict(), indent=2) + "\n")


def read_settings(path: str | Path) -> PostprocessSettings:
    """Read settings written by `write_settings` (the `postprocess` stage).

    Raises:
        BrainsegError: naming the file when it is missing, not JSON, or not valid settings.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise BrainsegError(f"{path}: post-processing settings not found "
                            "(run `brainseg postprocess` first)") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BrainsegError(f"{path}: not a valid JSON file: {exc}") from exc
    return PostprocessSettings.from_dict(data, source=str(path))


def remove_small_components(mask: np.ndarray, min_mm3: float, voxel_mm3: float) -> np.ndarray:
    """Drop the 26-connected components of a bool mask whose volume is below `min_mm3`.

    A component of n voxels has volume n * voxel_mm3; exactly `min_mm3` is kept.
    """
    from scipy import ndimage  # only here: a prediction without clean-up never imports it

    labelled, n = ndimage.label(mask, structure=CONNECTIVITY)
    if n == 0:
        return mask.copy()
    small = np.bincount(labelled.ravel()) * voxel_mm3 < min_mm3
    small[0] = False  # background
    return mask & ~small[labelled]


def _voxel_mm3(spacing: tuple[float, ...]) -> float:
    if len(spacing) != 3 or not all(_is_number(s) and s > 0 for s in spacing):
        raise BrainsegError(f"voxel spacing must be three positive numbers (mm), got {spacing}")
    return float(np.prod(spacing))


def apply(probs: np.ndarray, settings: PostprocessSettings,
          spacing: tuple[float, ...]) -> np.ndarray:
    """Turn region probabilities into BraTS labels.

    Args:
        probs: float (3, x, y, z) probabilities of WT, TC, ET.
        settings: thresholds and clean-up options.
        spacing: voxel size in mm along (x, y, z), for the volume-based options.

    Returns:
        uint8 (x, y, z) labels in {0, 1, 2, 4}.

    Raises:
        BrainsegError: for probabilities that are not (3, x, y, z) or a bad spacing.
    """
    if probs.ndim != 4 or probs.shape[0] != len(REGIONS):
        raise BrainsegError(f"expected region probabilities (3, x, y, z), got {probs.shape}")
    voxel_mm3 = _voxel_mm3(spacing)
    masks = np.stack([probs[i] > settings.thresholds[r] for i, r in enumerate(REGIONS)])
    masks[1] &= masks[0]  # TC ⊂ WT
    masks[2] &= masks[1]  # ET ⊂ TC
    for i, region in enumerate(REGIONS):
        min_mm3 = settings.min_component_mm3[region]  # type: ignore[index]
        if min_mm3 > 0 and masks[i].any():
            removed = masks[i] & ~remove_small_components(masks[i], min_mm3, voxel_mm3)
            masks[i:] &= ~removed  # this region and the ones nested inside it
    labels = regions_to_labels(masks)
    if settings.et_to_necrosis_mm3 > 0:
        et = labels == 4
        if 0 < np.count_nonzero(et) * voxel_mm3 < settings.et_to_necrosis_mm3:
            labels[et] = 1
    return labels
