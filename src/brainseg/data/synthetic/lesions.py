"""Lesion planning: how many lesions, their sizes, centres, core fractions and mass effect."""

from __future__ import annotations

import numpy as np

from brainseg.data.synthetic.common import MASS_SIGMA, Lesion
from brainseg.data.synthetic.config import SyntheticConfig
from brainseg.data.synthetic.mni import MNI_MIDLINE_X, mni_candidates

_LESION_ODDS = 0.3  # P(k + 1 lesions) / P(k lesions): most subjects have a single lesion


def _lesion_count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Draw a lesion count in ``bounds``, each extra lesion ``_LESION_ODDS`` times as likely."""
    counts = np.arange(bounds[0], bounds[1] + 1)
    prob = _LESION_ODDS ** (counts - counts[0]).astype(float)
    return int(rng.choice(counts, p=prob / prob.sum()))


def _pick_centre(
    rng: np.random.Generator, radius: float, placed: list[Lesion], scale: float
) -> np.ndarray:
    """Pick a lesion centre (MNI voxels) deep enough for ``radius``; satellites near the first.

    Args:
        rng: Random generator.
        radius: Whole-tumour equivalent radius of the new lesion (output mm).
        placed: Lesions already placed; a satellite lands 5-40 mm beyond the main lesion.
        scale: Output millimetres per MNI millimetre.

    Returns:
        (3,) MNI voxel coordinates.
    """
    points, depth = mni_candidates()
    lateral = np.abs(points[:, 0] - MNI_MIDLINE_X) * scale
    ok = (depth * scale > 0.3 * radius + 5) & (lateral > 0.6 * radius + 3)
    if placed:
        gap = np.linalg.norm(points - placed[0].centre, axis=1) * scale - placed[0].radius - radius
        near = ok & (gap > 5) & (gap < 40)
        ok = near if near.any() else ok
    if not ok.any():
        ok = depth >= depth.max()
    cand = points[ok]
    return cand[rng.integers(len(cand))] + rng.uniform(0, 2, 3)


def plan_lesions(
    rng: np.random.Generator, config: SyntheticConfig, scale: float, lower_grade: bool
) -> list[Lesion]:
    """Draw lesion count, sizes (log-uniform total volume), centres and mass effect.

    The total whole-tumour volume is drawn log-uniformly between the volumes of the spheres of
    radius ``config.tumor_radius_mm``; satellites take 5-25 % of it each, the main lesion the rest.
    """
    v_lo, v_hi = (4 / 3 * np.pi * r**3 for r in config.tumor_radius_mm)
    total = float(np.exp(rng.uniform(np.log(v_lo), np.log(v_hi))))
    shares = rng.uniform(0.05, 0.25, _lesion_count(rng, config.n_lesions) - 1)
    lesions: list[Lesion] = []
    for volume in (total * (1 - shares.sum()), *(total * shares)):
        radius = float(np.cbrt(3 * volume / (4 * np.pi)))
        centre = _pick_centre(rng, radius, lesions, scale)
        strength = rng.uniform(0.5, 1.0) * (0.5 if lower_grade else 1.0)
        push = config.mass_effect_mm * strength * np.exp(0.5) / (30.0 * MASS_SIGMA)
        frac = rng.uniform(*config.core_fraction)
        lesions.append(Lesion(centre, radius, frac, float(min(push, 0.7))))
    return lesions
