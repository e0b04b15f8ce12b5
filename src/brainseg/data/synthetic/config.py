"""``SyntheticConfig``: the knobs of the synthetic subject generator.

Their defaults and ranges live in one place, the params schema
(``download.synthetic`` in workflow/schemas/params.schema.yaml): the defaults below
are read from it, and a config is validated against it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from brainseg.params import default_params, validate_section

SECTION = "download.synthetic"  # where these knobs sit in params.yaml
_DEFAULTS: dict[str, Any] = default_params()["download"]["synthetic"]


def _default(name: str) -> Any:
    value = _DEFAULTS[name]
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic subject generator (lists are accepted for (min, max) pairs).

    Raises:
        BrainsegError: If a field is outside the schema's range (the message names the
            key and the value).
    """

    tumor_radius_mm: tuple[float, float] = _default("tumor_radius_mm")  # whole-tumour radius
    n_lesions: tuple[int, int] = _default("n_lesions")  # each extra lesion 0.3x as likely
    deformation_mm: float = _default("deformation_mm")  # std of the smooth random deformation
    bias_field: float = _default("bias_field")  # amplitude of the multiplicative bias (0: none)
    noise: float = _default("noise")  # Rician noise std, a fraction of white-matter intensity
    core_fraction: tuple[float, float] = _default("core_fraction")  # core / whole tumour volume
    necrosis_probability: float = _default("necrosis_probability")  # high-grade necrotic centre
    intensity_jitter: float = _default("intensity_jitter")  # per-subject tissue variation
    edema_wm_bias: float = _default("edema_wm_bias")  # log-penalty of edema outside white matter
    mass_effect_mm: float = _default("mass_effect_mm")  # peak displacement by a 30 mm lesion
    lower_grade_fraction: float = _default("lower_grade_fraction")  # no enhancement (labels 1, 2)
    ventricle_scale: tuple[float, float] = _default("ventricle_scale")  # ventricle/CSF size factor
    domain_randomization: bool = _default("domain_randomization")  # random contrasts, blur, slices
    edema_falloff: float = _default("edema_falloff")  # edema contrast lost at its outer border
    tumor_heterogeneity: float = _default("tumor_heterogeneity")  # texture std inside tumours
    necrosis_t1_contrast: float = _default("necrosis_t1_contrast")  # T1/T1ce label 1 vs WM, scaled
    enhancement_contrast: float = _default("enhancement_contrast")  # T1ce enhancing vs WM, scaled
    texture: float = _default("texture")  # fine band-pass brain texture std (0: none)

    def __post_init__(self) -> None:
        values = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                object.__setattr__(self, field.name, tuple(value))
            values[field.name] = list(value) if isinstance(value, list | tuple) else value
        validate_section(values, SECTION, source="SyntheticConfig")
