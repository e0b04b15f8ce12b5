"""Deterministic synthetic BraTS-like subjects (brain MRI with one or more gliomas).

Anatomy comes from nilearn's packaged MNI152 tissue templates, randomly scaled, rotated and
non-linearly deformed into the BraTS 240x240x155 grid; the lateral ventricles are enlarged or
shrunk and each lesion pushes the surrounding tissue away (mass effect) before the tissue maps
are resampled. One to three irregular nested lesions are painted in: a lobulated core
(enhancing rim around necrosis, or a non-enhancing core for lower-grade tumours) inside edema
that spreads preferentially along white matter. Four contrasts are synthesised from partial
volume tissue maps with per-subject contrast, bias field, Rician noise and scanner gain (or,
with domain randomization, random tissue intensities, blur and resolution). Arrays are indexed
(x, y, z), z axial, with the BraTS affine: voxel (i, j, k) maps to world (-i, 239 - j, k).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from brainseg.data.modalities import MODALITIES
from brainseg.data.synthetic.anatomy import draw_transform, resample_anatomy
from brainseg.data.synthetic.common import BRATS_AFFINE, BRATS_SHAPE, F32
from brainseg.data.synthetic.config import SyntheticConfig
from brainseg.data.synthetic.contrast import synthesize_contrast
from brainseg.data.synthetic.lesions import plan_lesions
from brainseg.data.synthetic.tumor import paint_tumors, tumor_weights

__all__ = ["BRATS_AFFINE", "BRATS_SHAPE", "SyntheticConfig", "generate_subject"]

logger = logging.getLogger(__name__)
HEALTHY_STREAM = 1  # third seed word of a tumour-free subject's random stream


def generate_subject(
    seed: int, index: int, config: SyntheticConfig | None = None, *, with_tissue: bool = False,
    healthy: bool = False,
) -> dict[str, np.ndarray]:
    """Generate one deterministic synthetic BraTS-like subject.

    The label map is drawn before any intensity, so ``domain_randomization`` changes the
    images but never the labels of a given (seed, index).

    Args:
        seed: Cohort seed.
        index: Subject index within the cohort; (seed, index) fully determines the output.
        config: Generator knobs; defaults to ``SyntheticConfig()``.
        with_tissue: Also return the partial-volume tissue maps (for quality checks).
        healthy: A tumour-free brain (no lesion, no mass effect; "seg" all 0), drawn from
            its own random stream: (seed, index, healthy) never gives the bytes of the
            subject (seed, index) with a tumour, which stay as they are.

    Returns:
        Dict with "t1", "t1ce", "t2", "flair" (int16, shape (240, 240, 155), axes (x, y, z),
        z axial, exactly 0 outside the brain and >= 1 inside), "seg" (uint8, same shape, labels
        0 background, 1 necrosis / non-enhancing core, 2 edema, 4 enhancing) and "affine"
        (float64 (4, 4), ``BRATS_AFFINE``); with ``with_tissue`` also "gm", "wm", "csf"
        (float32 probabilities, same shape, before the tumour is painted).

    Raises:
        ValueError: If ``seed`` or ``index`` is negative.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    config = config or SyntheticConfig()
    start = time.perf_counter()
    rng = np.random.default_rng([seed, index, HEALTHY_STREAM] if healthy else [seed, index])
    transform = draw_transform(rng)
    lower_grade = bool(rng.random() < config.lower_grade_fraction)
    lesions = [] if healthy else plan_lesions(rng, config, transform[2], lower_grade)
    box, tissues, centres = resample_anatomy(rng, config, transform, lesions)
    seg_box = paint_tumors(rng, lesions, centres, (tissues[0], tissues[2]), config, lower_grade)
    tumor = tumor_weights(seg_box, config.edema_falloff)
    out: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        img = synthesize_contrast(rng, modality, tissues, tumor, config, lower_grade)
        out[modality] = _to_grid(box, np.where(tissues[0], np.clip(np.rint(img), 1, 32767), 0),
                                 np.int16)
    out["seg"] = _to_grid(box, seg_box, np.uint8)
    out["affine"] = BRATS_AFFINE.copy()
    if with_tissue:
        for key, tissue in zip(("gm", "wm", "csf"), tissues[1:], strict=True):
            out[key] = _to_grid(box, tissue, F32)
    logger.debug(
        "subject (%d, %d): %d lesion(s), %s grade, %.2f s", seed, index, len(lesions),
        "lower" if lower_grade else "high", time.perf_counter() - start,
    )
    return out


def _to_grid(box: tuple[slice, ...], values: np.ndarray, dtype: type) -> np.ndarray:
    """Place box-shaped ``values`` into a zero BraTS-shaped array of ``dtype``."""
    vol = np.zeros(BRATS_SHAPE, dtype=dtype)
    vol[box] = values.astype(dtype)
    return vol
