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

import functools
import logging
import numbers
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial.transform import Rotation

logger = logging.getLogger(__name__)

BRATS_SHAPE = (240, 240, 155)
BRATS_AFFINE = np.array(
    [[-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 239.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
)
MODALITIES = ("t1", "t1ce", "t2", "flair")
_F32 = np.float32
_BASE_SCALE = 0.9  # MNI brain (~155 mm tall) shrunk to BraTS-like size
_CENTRE_VOX = np.array([119.5, 125.0, 73.0])  # mean brain centre in the BraTS grid
# Base intensities per modality, before jitter and gain:
# (csf, gm, wm, edema, necrosis, enhancing, non-enhancing core of lower-grade tumours).
_INTENSITY = {
    "t1": (120.0, 330.0, 450.0, 300.0, 160.0, 320.0, 220.0),
    "t1ce": (120.0, 320.0, 440.0, 295.0, 150.0, 760.0, 215.0),
    "t2": (1800.0, 700.0, 450.0, 1250.0, 1500.0, 950.0, 1300.0),
    "flair": (60.0, 380.0, 300.0, 500.0, 330.0, 460.0, 470.0),
}
_DR_INTENSITY = (20.0, 2000.0)  # domain randomization: tissue intensity range, before gain
_LESION_ODDS = 0.3  # P(k + 1 lesions) / P(k lesions): most subjects have a single lesion
_MNI_MIDLINE_X = 98.0  # MNI152 1 mm voxel index of the mid-sagittal plane (world x = 0)
_VENTRICLE_CENTRE = np.array([98.0, 119.0, 86.0])  # lateral ventricles, MNI152 1 mm voxels
_VENTRICLE_SIGMA = np.array([22.0, 28.0, 14.0])  # Gaussian window of the ventricle scaling
_MASS_SIGMA = 1.2  # mass-effect window std, in units of the lesion's equivalent radius
_FRONT_STEPS = 10  # iterations of the edema front (2 mm grid, 3 mm Gaussian per step)
_LABEL_RANK = np.array([0, 3, 1, 0, 2], dtype=np.uint8)  # merge priority: 1 > 4 > 2 > 0
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


@dataclass(frozen=True)
class _Lesion:
    """One planned lesion: centre in MNI voxels, sizes in output millimetres."""

    centre: np.ndarray  # (3,) MNI152 voxel coordinates
    radius: float  # whole-tumour equivalent radius (mm)
    core_fraction: float  # core volume / whole-tumour volume
    push: float  # mass effect: radial contraction of the sampling at the centre, in [0, 0.7]


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load the MNI152 1 mm brain mask, GM and WM probabilities once per process.

    Returns:
        (mask, gm, wm), float32 arrays of shape (197, 233, 189), axes (x, y, z) RAS.
    """
    from nilearn import datasets

    arrays = []
    for name in ("brain_mask", "gm_template", "wm_template"):
        arr = np.asarray(getattr(datasets, f"load_mni152_{name}")(resolution=1).dataobj, _F32)
        arr.setflags(write=False)
        arrays.append(arr)
    return arrays[0], arrays[1], arrays[2]


@functools.lru_cache(maxsize=1)
def _mni_bbox() -> tuple[np.ndarray, np.ndarray]:
    """Inclusive (low, high) voxel corners of the MNI152 brain mask, each of shape (3,)."""
    idx = np.argwhere(_templates()[0] > 0.5)
    return idx.min(axis=0), idx.max(axis=0)


@functools.lru_cache(maxsize=1)
def _mni_candidates() -> tuple[np.ndarray, np.ndarray]:
    """Candidate lesion centres: supratentorial white matter of MNI152 on a 2 mm lattice.

    Returns:
        (points (N, 3) in MNI voxel coordinates, depth (N,) distance to the brain border in mm).
    """
    mask, _, wm = _templates()
    sub = (slice(None, None, 2),) * 3
    depth = ndi.distance_transform_edt(mask[sub] > 0.5) * 2.0
    lo, hi = _mni_bbox()
    upper = np.arange(depth.shape[2])[None, None, :] >= (lo[2] + 0.35 * (hi[2] - lo[2])) / 2
    keep = (depth > 6.0) & (wm[sub] > 0.5) & upper
    return np.argwhere(keep) * 2.0, depth[keep]


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], n_ctrl: tuple[int, ...]
) -> np.ndarray:
    """Smooth random field (zero mean, unit std) from Gaussian RBFs on a coarse control grid.

    Args:
        rng: Random generator.
        shape: Output shape (x, y, z).
        n_ctrl: Number of control points per axis (sets the spatial frequency).

    Returns:
        float32 array of ``shape``.
    """
    coef = rng.standard_normal(n_ctrl).astype(_F32)
    bases = []
    for length, n in zip(shape, n_ctrl, strict=True):
        x = np.arange(length, dtype=_F32)[:, None]
        centres = np.linspace(0, length - 1, n, dtype=_F32)[None]
        sigma = max((length - 1) / max(n - 1, 1), 1.0) * 0.6
        basis = np.exp(-0.5 * ((x - centres) / sigma) ** 2)
        bases.append(basis / basis.sum(axis=1, keepdims=True))
    tmp = np.einsum("abz,yb->ayz", np.einsum("abc,zc->abz", coef, bases[2]), bases[1])
    out = np.zeros(shape, dtype=_F32)
    for a in range(n_ctrl[0]):
        out += bases[0][:, a, None, None] * tmp[a][None]
    out -= out.mean()
    return out / max(float(out.std()), 1e-6)


def _lumps(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    spacing: tuple[float, ...],
    amp: tuple[float, ...],
) -> np.ndarray:
    """Sum of smooth random fields with control spacings ``spacing`` (voxels) and amplitudes."""
    out = np.zeros(shape, dtype=_F32)
    for step, a in zip(spacing, amp, strict=True):
        out += _F32(a) * _smooth_field(rng, shape, tuple(max(3, round(s / step)) for s in shape))
    return out


def _transform(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """Draw the per-subject affine mapping BraTS voxel indices to MNI voxel indices.

    Returns:
        (matrix (3, 3), offset (3,), mean scale) with ``mni = matrix @ p + offset``.
    """
    scale = _BASE_SCALE * rng.uniform(0.93, 1.07) * rng.uniform(0.97, 1.03, 3)
    rot = Rotation.from_euler("xyz", rng.uniform(-5, 5, 3), degrees=True).as_matrix()
    lin = rot @ np.diag(1.0 / scale) @ BRATS_AFFINE[:3, :3]
    centre = _CENTRE_VOX + rng.uniform(-4, 4, 3) * np.array([1.0, 1.0, 0.6])
    mni_centre = (_mni_bbox()[0] + _mni_bbox()[1]) / 2.0
    return lin, mni_centre - lin @ centre, float(scale.mean())


def _lesion_count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Draw a lesion count in ``bounds``, each extra lesion ``_LESION_ODDS`` times as likely."""
    counts = np.arange(bounds[0], bounds[1] + 1)
    prob = _LESION_ODDS ** (counts - counts[0]).astype(float)
    return int(rng.choice(counts, p=prob / prob.sum()))


def _pick_centre(
    rng: np.random.Generator, radius: float, placed: list[_Lesion], scale: float
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
    points, depth = _mni_candidates()
    lateral = np.abs(points[:, 0] - _MNI_MIDLINE_X) * scale
    ok = (depth * scale > 0.3 * radius + 5) & (lateral > 0.6 * radius + 3)
    if placed:
        gap = np.linalg.norm(points - placed[0].centre, axis=1) * scale - placed[0].radius - radius
        near = ok & (gap > 5) & (gap < 40)
        ok = near if near.any() else ok
    if not ok.any():
        ok = depth >= depth.max()
    cand = points[ok]
    return cand[rng.integers(len(cand))] + rng.uniform(0, 2, 3)


def _plan_lesions(
    rng: np.random.Generator, config: SyntheticConfig, scale: float, lower_grade: bool
) -> list[_Lesion]:
    """Draw lesion count, sizes (log-uniform total volume), centres and mass effect.

    The total whole-tumour volume is drawn log-uniformly between the volumes of the spheres of
    radius ``config.tumor_radius_mm``; satellites take 5-25 % of it each, the main lesion the rest.
    """
    v_lo, v_hi = (4 / 3 * np.pi * r**3 for r in config.tumor_radius_mm)
    total = float(np.exp(rng.uniform(np.log(v_lo), np.log(v_hi))))
    shares = rng.uniform(0.05, 0.25, _lesion_count(rng, config.n_lesions) - 1)
    lesions: list[_Lesion] = []
    for volume in (total * (1 - shares.sum()), *(total * shares)):
        radius = float(np.cbrt(3 * volume / (4 * np.pi)))
        centre = _pick_centre(rng, radius, lesions, scale)
        strength = rng.uniform(0.5, 1.0) * (0.5 if lower_grade else 1.0)
        push = config.mass_effect_mm * strength * np.exp(0.5) / (30.0 * _MASS_SIGMA)
        frac = rng.uniform(*config.core_fraction)
        lesions.append(_Lesion(centre, radius, frac, float(min(push, 0.7))))
    return lesions


def _base_coords(
    rng: np.random.Generator,
    config: SyntheticConfig,
    transform: tuple[np.ndarray, np.ndarray, float],
) -> tuple[tuple[slice, ...], np.ndarray]:
    """MNI sampling coordinates of a crop of the BraTS grid: affine plus smooth deformation.

    Returns:
        (box slices in the BraTS grid, float32 coordinates (3, *box shape)).
    """
    lin, offset, scale = transform
    corners = np.array(np.meshgrid(*zip(*_mni_bbox(), strict=True))).reshape(3, -1)
    out_corners = np.linalg.solve(lin, corners - offset[:, None])
    margin = 3 * config.deformation_mm + 3
    lo = np.clip(np.floor(out_corners.min(1) - margin), 0, BRATS_SHAPE).astype(int)
    hi = np.clip(np.ceil(out_corners.max(1) + margin), 0, BRATS_SHAPE).astype(int)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    shape = tuple(int(b - a) for a, b in zip(lo, hi, strict=True))
    axes = [np.arange(a, b, dtype=_F32) for a, b in zip(lo, hi, strict=True)]
    coords = np.empty((3, *shape), dtype=_F32)
    n_ctrl = tuple(max(3, round(s / 35)) for s in shape)
    for r in range(3):
        coords[r] = _smooth_field(rng, shape, n_ctrl) * _F32(config.deformation_mm / scale)
        coords[r] += _F32(offset[r]) + lin[r, 0] * axes[0][:, None, None]
        coords[r] += lin[r, 1] * axes[1][None, :, None] + lin[r, 2] * axes[2][None, None, :]
    return box, coords


def _output_centre(coords: np.ndarray, target: np.ndarray, guess: np.ndarray) -> np.ndarray:
    """Box voxel whose MNI coordinate is nearest ``target``, searched within 12 voxels of guess."""
    shape = np.array(coords.shape[1:])
    lo = np.clip(np.round(guess).astype(int) - 12, 0, shape - 1)
    hi = np.clip(np.round(guess).astype(int) + 13, lo + 1, shape)
    win = coords[:, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    dist = ((win - target.astype(_F32)[:, None, None, None]) ** 2).sum(axis=0)
    return lo + np.array(np.unravel_index(np.argmin(dist), dist.shape))


def _radial_warp(points: np.ndarray, centre: np.ndarray, sigma: np.ndarray, k: float) -> None:
    """Pull sampling points towards ``centre`` (in place) by ``k`` times a Gaussian window.

    ``p <- c + (p - c) (1 - k w(p))`` with ``w = exp(-|(p - c) / sigma|^2 / 2)``: for k > 0
    the structure at ``c`` is enlarged and its surroundings pushed outwards (k < 0 shrinks it).
    The map stays one-to-one for -2 < k < 1.
    """
    if k == 0:
        return
    q = np.zeros(points.shape[1], dtype=_F32)
    for axis in range(3):
        q += ((points[axis] - _F32(centre[axis])) * _F32(1 / sigma[axis])) ** 2
    w = _F32(k) * np.exp(_F32(-0.5) * q)
    for axis in range(3):
        points[axis] -= (points[axis] - _F32(centre[axis])) * w


def _resample_anatomy(
    rng: np.random.Generator,
    config: SyntheticConfig,
    transform: tuple[np.ndarray, np.ndarray, float],
    lesions: list[_Lesion],
) -> tuple[tuple[slice, ...], tuple[np.ndarray, ...], list[np.ndarray]]:
    """Deform the MNI templates into a crop of the BraTS grid, with ventricle and mass effects.

    The brain outline is sampled without the ventricle and mass-effect warps (the skull does
    not move); the GM and WM maps are sampled with them.

    Returns:
        (box, (brain bool, gm, wm, csf) float32 maps of the box shape and 0 outside the brain,
        lesion centres as box voxel indices).
    """
    lin, offset, scale = transform
    box, coords = _base_coords(rng, config, transform)
    mask, gm, wm = _templates()
    prob = ndi.map_coordinates(mask, coords, order=1, output=_F32)
    brain = prob > 0.5
    start = np.array([s.start for s in box])
    centres = [
        _output_centre(coords, les.centre, np.linalg.solve(lin, les.centre - offset) - start)
        for les in lesions
    ]
    inside = coords[:, brain]
    ventricle = rng.uniform(*config.ventricle_scale)
    _radial_warp(inside, _VENTRICLE_CENTRE, _VENTRICLE_SIGMA, 1 - 1 / ventricle)
    for les in lesions:
        _radial_warp(inside, les.centre, np.full(3, _MASS_SIGMA * les.radius / scale), les.push)
    maps = []
    for tissue in (gm, wm):
        full = np.zeros(brain.shape, dtype=_F32)
        full[brain] = ndi.map_coordinates(tissue, inside, order=1, output=_F32)
        maps.append(full)
    csf = np.where(brain, np.clip(prob - maps[0] - maps[1], 0, None), 0).astype(_F32)
    return box, _scale_csf(brain, maps[0], maps[1], csf, ventricle), centres


def _scale_csf(
    brain: np.ndarray, gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, factor: float
) -> tuple[np.ndarray, ...]:
    """Widen (factor > 1) or narrow the sulcal CSF by reweighting partial-volume voxels.

    ``csf <- 1 - (1 - csf) ** factor``, GM and WM rescaled so that the total is unchanged.

    Returns:
        (brain, gm, wm, csf).
    """
    sel = brain & (csf > 0) & (csf < 1)
    old = csf[sel]
    new = 1 - (1 - old) ** _F32(factor)
    ratio = (1 - new) / (1 - old)
    gm[sel] *= ratio
    wm[sel] *= ratio
    csf[sel] = new
    return brain, gm, wm, csf


def _box_around(
    centre: np.ndarray, half: float, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """Slices of a cube of half-size ``half`` around ``centre``, clipped to ``shape``."""
    h = int(np.ceil(half))
    return tuple(
        slice(max(int(c) - h, 0), min(int(c) + h + 1, n))
        for c, n in zip(centre, shape, strict=True)
    )


def _bbox(mask: np.ndarray, margin: int) -> tuple[slice, ...]:
    """Bounding-box slices of ``mask`` grown by ``margin`` voxels (clipped to the array)."""
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def _threshold(field: np.ndarray, valid: np.ndarray, n: float) -> float:
    """Value of the ``n``-th highest ``field`` voxel among ``valid`` voxels."""
    vals = field[valid]
    n = int(min(max(round(n), 1), vals.size))
    return float(np.partition(vals, vals.size - n)[vals.size - n])


def _upsample2(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear x2 upsampling of a field sampled at even voxels back to ``shape``."""
    for axis, n in enumerate(shape):
        a = np.moveaxis(a, axis, 0)
        out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=_F32)
        out[0::2] = a
        out[1:-1:2] = 0.5 * (a[:-1] + a[1:])
        out[-1] = a[-1]
        a = np.moveaxis(out[:n], 0, axis)
    return a


def _core_field(
    rng: np.random.Generator, grids: list[np.ndarray], r_core: float
) -> np.ndarray:
    """Core "insideness" field: a random rotated ellipsoid deformed by smooth lumps.

    Args:
        rng: Random generator.
        grids: Broadcastable offsets (mm) from the lesion centre along x, y and z.
        r_core: Equivalent radius of the core (mm).

    Returns:
        float32 field, about ``1 - r / r_core`` plus lobulation.
    """
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    axes = np.exp(rng.uniform(-0.35, 0.35, 3))
    axes = axes / np.cbrt(axes.prod()) * r_core
    rho = sum(
        ((rot[0, i] * grids[0] + rot[1, i] * grids[1] + rot[2, i] * grids[2]) / axes[i]) ** 2
        for i in range(3)
    )
    shape = np.broadcast_shapes(*(g.shape for g in grids))
    lumps = _lumps(rng, shape, (r_core / 3.0, 2.5), (0.35, 0.12))
    return 1 - np.sqrt(rho).astype(_F32) + lumps


def _edema_front(
    rng: np.random.Generator, core: np.ndarray, wm: np.ndarray, valid: np.ndarray, bias: float
) -> np.ndarray:
    """Spread the edema from the core as a front that travels preferentially along WM.

    Each step blurs the front (3 mm Gaussian on the 2 mm grid) and attenuates it by
    ``exp(-bias * (1 - wm))`` times a smooth random factor, so ``-log`` of the result behaves
    like a geodesic distance that is cheap in white matter and dear in cortex and CSF.

    Returns:
        float32 field in [0, 1], 1 on the core.
    """
    shape = core.shape
    lumps = _lumps(rng, shape, (10.0, 4.0), (1.0, 0.4))
    weight = np.minimum(np.exp(_F32(-bias) * (1 - wm) + lumps), 1) * valid
    u = core.astype(_F32)
    for _ in range(_FRONT_STEPS):
        u = np.maximum(u, weight * ndi.gaussian_filter(u, 1.5, truncate=3.0))
    return u


def _lesion_fields(
    rng: np.random.Generator,
    lesion: _Lesion,
    centre: np.ndarray,
    valid2: np.ndarray,
    wm2: np.ndarray,
    config: SyntheticConfig,
) -> tuple[list[np.ndarray], tuple[float, float]]:
    """Core, whole-tumour and necrosis fields of one lesion on its 2 mm grid.

    Returns:
        ([core field, edema front, necrosis field (> 0 inside)], (core, whole thresholds)).
    """
    r_wt = lesion.radius
    r_core = r_wt * lesion.core_fraction ** (1 / 3)
    grids = [
        (2.0 * np.arange(n, dtype=_F32) - c).reshape([-1 if a == i else 1 for a in range(3)])
        for i, (n, c) in enumerate(zip(valid2.shape, centre, strict=True))
    ]
    core_f = _core_field(rng, grids, r_core)
    vol = 4 / 3 * np.pi * r_wt**3 / 8.0  # in 2 mm voxels
    t_core = _threshold(core_f, valid2, lesion.core_fraction * vol)
    core2 = (core_f >= t_core) & valid2
    front = _edema_front(rng, core2, wm2, valid2, config.edema_wm_bias)
    t_wt = max(_threshold(front, valid2, vol), 1e-30)  # never take the unreached zeros
    depth = ndi.distance_transform_edt(core2).astype(_F32) * 2.0
    rim = rng.uniform(0.15, 0.35) * r_core * (1 + _lumps(rng, core2.shape, (4.0,), (0.4,)))
    return [core_f, front, depth - np.maximum(rim, 2.0)], (t_core, t_wt)


def _paint_lesion(
    rng: np.random.Generator,
    lesion: _Lesion,
    centre: np.ndarray,
    tissues: tuple[np.ndarray, np.ndarray],
    config: SyntheticConfig,
    lower_grade: bool,
) -> tuple[tuple[slice, ...], np.ndarray]:
    """Paint one irregular nested lesion (1 necrosis / non-enhancing core, 2 edema, 4 enhancing).

    Fields are computed on a 2 mm grid, upsampled linearly and thresholded at 1 mm.

    Returns:
        (slices of the lesion box in the anatomy box, uint8 labels of the lesion box).
    """
    brain, wm = tissues
    loc = _box_around(centre, 1.8 * lesion.radius + 6, brain.shape)
    valid = brain[loc]
    start = np.array([s.start for s in loc])
    sub = (slice(None, None, 2),) * 3
    fields, (t_core, t_wt) = _lesion_fields(
        rng, lesion, centre - start, valid[sub], wm[loc][sub], config
    )
    core_f, front, necro = (_upsample2(f, valid.shape) for f in fields)
    necrotic = not lower_grade and rng.random() < config.necrosis_probability
    return loc, _nested_labels(core_f >= t_core, front >= t_wt, necro > 0, valid, necrotic,
                               lower_grade)


def _nested_labels(
    core: np.ndarray,
    whole: np.ndarray,
    necrosis: np.ndarray,
    valid: np.ndarray,
    necrotic: bool,
    lower_grade: bool,
) -> np.ndarray:
    """Combine thresholded masks into nested labels: necrosis in rim in core in edema.

    Returns:
        uint8 labels: the core is 4 (with 1 inside when ``necrotic``), or all 1 when
        ``lower_grade``; edema 2 wraps the core by at least 2 voxels within ``valid``.
    """
    core &= valid
    if not core.any():
        core = np.zeros_like(valid)
        core[tuple(np.array(valid.shape) // 2)] = valid[tuple(np.array(valid.shape) // 2)]
    cb = _bbox(core, 3)
    core_c = np.zeros_like(core)
    core_c[cb] = _largest(core[cb]) & valid[cb]
    whole = (whole & valid) | core_c
    whole[cb] |= ndi.binary_dilation(core_c[cb], iterations=2) & valid[cb]
    lab, _ = ndi.label(whole)
    whole = np.isin(lab, np.unique(lab[core_c]))
    labels = np.where(whole, 2, 0).astype(np.uint8)
    labels[core_c] = 1 if lower_grade else 4
    if necrotic:
        inner = np.zeros_like(core_c)
        inner[cb] = ndi.binary_erosion(core_c[cb])
        labels[inner & necrosis] = 1
    return labels


def _largest(mask: np.ndarray) -> np.ndarray:
    """Largest connected component of ``mask`` with holes filled."""
    lab, n = ndi.label(mask)
    if n > 1:
        mask = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return ndi.binary_fill_holes(mask)


def _paint_tumors(
    rng: np.random.Generator,
    lesions: list[_Lesion],
    centres: list[np.ndarray],
    tissues: tuple[np.ndarray, np.ndarray],
    config: SyntheticConfig,
    lower_grade: bool,
) -> np.ndarray:
    """Paint all lesions into a uint8 label map of the box; overlaps keep 1 > 4 > 2 > 0."""
    seg = np.zeros(tissues[0].shape, dtype=np.uint8)
    for lesion, centre in zip(lesions, centres, strict=True):
        loc, labels = _paint_lesion(rng, lesion, centre, tissues, config, lower_grade)
        seg[loc] = np.where(_LABEL_RANK[labels] > _LABEL_RANK[seg[loc]], labels, seg[loc])
    return seg


def _tumor_weights(seg: np.ndarray) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    """Partial-volume weights of edema, label 1 and enhancing tumour around the lesions.

    Returns:
        (slices bounding the tumours with a margin, [w2, w1, w4] float32 of that shape).
    """
    tloc = _bbox(seg > 0, 4)
    sub = seg[tloc]
    return tloc, [
        ndi.gaussian_filter((sub == lab).astype(_F32), 0.8, truncate=3.0) for lab in (2, 1, 4)
    ]


def _intensities(
    rng: np.random.Generator, modality: str, config: SyntheticConfig, lower_grade: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-subject tissue intensities of one modality.

    Returns:
        ((csf, gm, wm), (edema, label 1, enhancing)) as float64 arrays.
    """
    if config.domain_randomization:
        values = rng.uniform(*_DR_INTENSITY, 7)
    else:
        jit = config.intensity_jitter
        values = np.array(_INTENSITY[modality]) * rng.uniform(1 - jit, 1 + jit, 7)
    label1 = values[6] if lower_grade else values[4]
    return values[:3], np.array([values[3], label1, values[5]])


def _contrast(
    rng: np.random.Generator,
    modality: str,
    tissues: tuple[np.ndarray, ...],
    tumor: tuple[tuple[slice, ...], list[np.ndarray]],
    config: SyntheticConfig,
    lower_grade: bool,
) -> np.ndarray:
    """Synthesise one modality (float32, box shape) from tissue maps and tumour weights."""
    brain, gm, wm, csf = tissues
    (i_csf, i_gm, i_wm), i_tum = _intensities(rng, modality, config, lower_grade)
    img = csf * _F32(i_csf) + gm * _F32(i_gm) + wm * _F32(i_wm)
    tloc, weights = tumor
    sub, shape = img[tloc], img[tloc].shape
    texture = 1 + 0.1 * _smooth_field(rng, shape, tuple(max(3, s // 6) for s in shape))
    sub *= 1 - sum(weights)
    for weight, value in zip(weights, i_tum, strict=True):
        sub += weight * texture * _F32(value)
    bias = _smooth_field(rng, img.shape, (3, 3, 3))
    img *= np.exp(_F32(config.bias_field) * bias / max(float(np.abs(bias).max()), 1e-6))
    if config.domain_randomization:
        img = _degrade(rng, img)
    sigma = config.noise * i_wm
    vals = img[brain]
    n1, n2 = (rng.standard_normal(vals.size, dtype=_F32) * _F32(sigma) for _ in range(2))
    img[brain] = np.sqrt((vals + n1) ** 2 + n2**2) * _F32(rng.uniform(0.7, 1.4))
    img[~brain] = 0
    return img


def _degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Random Gaussian blur (sigma 0-1.5 voxels) and thick slices along a random axis (1-3x)."""
    sigma = rng.uniform(0.0, 1.5)
    if sigma > 0.05:
        img = ndi.gaussian_filter(img, sigma, truncate=3.0)
    axis, factor = int(rng.integers(3)), rng.uniform(1.0, 3.0)
    if factor < 1.05:
        return img
    img = ndi.gaussian_filter1d(img, 0.4 * factor, axis=axis, truncate=3.0)
    n = img.shape[axis]
    low = _interp_axis(img, axis, np.arange(0.0, n - 1 + 1e-6, factor))
    return _interp_axis(low, axis, np.minimum(np.arange(n) / factor, low.shape[axis] - 1))


def _interp_axis(a: np.ndarray, axis: int, pos: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``a`` at fractional indices ``pos`` along ``axis``."""
    if a.shape[axis] < 2:
        return np.repeat(a, len(pos), axis=axis)
    i0 = np.clip(np.floor(pos).astype(int), 0, a.shape[axis] - 2)
    shape = [1] * a.ndim
    shape[axis] = -1
    w = (pos - i0).astype(_F32).reshape(shape)
    return np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i0 + 1, axis=axis) * w


def generate_subject(
    seed: int, index: int, config: SyntheticConfig | None = None, *, with_tissue: bool = False
) -> dict[str, np.ndarray]:
    """Generate one deterministic synthetic BraTS-like subject.

    The label map is drawn before any intensity, so ``domain_randomization`` changes the
    images but never the labels of a given (seed, index).

    Args:
        seed: Cohort seed.
        index: Subject index within the cohort; (seed, index) fully determines the output.
        config: Generator knobs; defaults to ``SyntheticConfig()``.
        with_tissue: Also return the partial-volume tissue maps (for quality checks).

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
    rng = np.random.default_rng([seed, index])
    transform = _transform(rng)
    lower_grade = bool(rng.random() < config.lower_grade_fraction)
    lesions = _plan_lesions(rng, config, transform[2], lower_grade)
    box, tissues, centres = _resample_anatomy(rng, config, transform, lesions)
    seg_box = _paint_tumors(rng, lesions, centres, (tissues[0], tissues[2]), config, lower_grade)
    tumor = _tumor_weights(seg_box)
    out: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        img = _contrast(rng, modality, tissues, tumor, config, lower_grade)
        out[modality] = _to_grid(box, np.where(tissues[0], np.clip(np.rint(img), 1, 32767), 0),
                                 np.int16)
    out["seg"] = _to_grid(box, seg_box, np.uint8)
    out["affine"] = BRATS_AFFINE.copy()
    if with_tissue:
        for key, tissue in zip(("gm", "wm", "csf"), tissues[1:], strict=True):
            out[key] = _to_grid(box, tissue, _F32)
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
