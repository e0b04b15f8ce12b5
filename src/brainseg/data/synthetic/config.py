"""``SyntheticConfig``: the knobs of the synthetic subject generator and their validation."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

_PAIRS = {  # (min, max) fields: bounds (inclusive) of both ends
    "tumor_radius_mm": (1.0, 45.0),
    "core_fraction": (0.01, 0.99),
    "n_lesions": (1, 5),
    "ventricle_scale": (0.5, 2.0),
}
_SCALARS = {  # scalar fields: bounds (inclusive)
    "deformation_mm": (0.0, 20.0),
    "bias_field": (0.0, 0.99),
    "noise": (0.0, 1.0),
    "necrosis_probability": (0.0, 1.0),
    "intensity_jitter": (0.0, 0.9),
    "edema_wm_bias": (0.0, 10.0),
    "mass_effect_mm": (0.0, 20.0),
    "lower_grade_fraction": (0.0, 1.0),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic subject generator (lists are accepted for (min, max) pairs).

    Raises:
        ValueError: If a field is out of range (the message names the field and value).
    """

    tumor_radius_mm: tuple[float, float] = (13.0, 38.0)  # whole-tumour equivalent radius range
    n_lesions: tuple[int, int] = (1, 3)  # lesion count range; each extra lesion 0.3x as likely
    deformation_mm: float = 4.0  # std of the smooth random per-subject deformation
    bias_field: float = 0.2  # amplitude of the smooth multiplicative bias field (0 = none)
    noise: float = 0.03  # Rician noise std as a fraction of the white-matter intensity
    core_fraction: tuple[float, float] = (0.3, 0.6)  # range of tumour core / whole tumour volume
    necrosis_probability: float = 0.8  # probability that a high-grade core has a necrotic centre
    intensity_jitter: float = 0.12  # per-subject relative variation of tissue intensities
    edema_wm_bias: float = 6.0  # log-penalty of edema spreading through non-white matter
    mass_effect_mm: float = 6.0  # peak tissue displacement by a 30 mm lesion (scales with size)
    lower_grade_fraction: float = 0.25  # fraction of subjects without enhancement (labels 1, 2)
    ventricle_scale: tuple[float, float] = (0.8, 1.4)  # range of the ventricle/CSF size factor
    domain_randomization: bool = False  # random tissue intensities, blur and resolution

    def __post_init__(self) -> None:
        for name, (low, high) in _PAIRS.items():
            value = getattr(self, name)
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(self, name, value)
            _check_pair(name, value, low, high, integer=name == "n_lesions")
        for name, (low, high) in _SCALARS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ValueError(f"{name} must be a number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{name} must be in [{low}, {high}], got {value}")
        if not isinstance(self.domain_randomization, bool):
            raise ValueError(
                f"domain_randomization must be a bool, got {self.domain_randomization!r}"
            )


def _check_pair(name: str, value: object, low: float, high: float, integer: bool) -> None:
    """Validate a (min, max) field: ``low <= min <= max <= high``.

    Raises:
        ValueError: Naming ``name`` and ``value`` when the pair is malformed or out of range.
    """
    kind = numbers.Integral if integer else numbers.Real
    if (
        not isinstance(value, tuple)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, kind) for v in value)
    ):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}")
    if not low <= value[0] <= value[1] <= high:
        raise ValueError(f"{name} must satisfy {low} <= min <= max <= {high}, got {value}")
