"""Tumour-free synthetic subjects, preprocessed as the pipeline preprocesses a scan.

A healthy subject of the synthetic generator (`generate_subject(..., healthy=True)`) goes
through the very functions of `extract` and `normalize` (`extract_slices`, then
`normalize_slices` with the same params), so that it sits in the training store's grid
and intensity scale beside the real subjects' slices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.data.synthetic import SyntheticConfig, generate_subject

#: healthy subject k of a cohort is generator index HEALTHY_INDEX + k (its own stream too)
HEALTHY_INDEX = 100_000


def healthy_slices(params: dict[str, Any], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The store arrays of tumour-free synthetic subject `k`, seeded by `base.seed`.

    Args:
        params: validated params (base.seed, download.synthetic, extract, normalize).
        k: which healthy subject (0, 1, ...).

    Returns:
        image float16 (s, 4, h, w) z-scores in `MODALITIES` order (0 outside the brain),
        and labels uint8 (s, h, w), all 0: the arrays `normalize` writes for a subject.
    """
    config = SyntheticConfig(**params["download"]["synthetic"])
    subject = generate_subject(params["base"]["seed"], HEALTHY_INDEX + k, config, healthy=True)
    cfg = params["extract"]
    slices, labels, brain, _ = extract_slices(
        [subject[m] for m in MODALITIES], subject["seg"], cfg["image_size"], cfg["margin"],
        cfg["min_brain_pixels"])
    image, _ = normalize_slices(slices, brain, tuple(params["normalize"]["clip_percentiles"]))
    return image, labels
