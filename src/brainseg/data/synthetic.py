"""Deterministic synthetic BraTS-like subjects (brain MRI with a glioma).

Anatomy comes from nilearn's packaged MNI152 tissue templates, randomly scaled, rotated and
non-linearly deformed into the BraTS 240x240x155 grid; a nested irregular lesion (edema,
enhancing rim, necrotic core) is painted in; four contrasts are synthesised from tissue
probabilities with bias field, Rician noise and scanner gain. Arrays are indexed (x, y, z),
z axial, with the BraTS affine: voxel (i, j, k) maps to world (-i, 239 - j, k).
"""

from __future__ import annotations

import functools
import logging
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
# Base intensities per modality: (csf, gm, wm, edema, necrosis, enhancing), before gain.
_INTENSITY = {
    "t1": (120.0, 330.0, 450.0, 300.0, 160.0, 320.0),
    "t1ce": (120.0, 320.0, 440.0, 295.0, 150.0, 760.0),
    "t2": (1800.0, 700.0, 450.0, 1250.0, 1500.0, 950.0),
    "flair": (60.0, 380.0, 300.0, 500.0, 330.0, 460.0),
}


@dataclass(frozen=True)
class SyntheticConfig:
    """Knobs of the synthetic subject generator.

    Raises:
        ValueError: If a field is out of range (the message names the field and value).
    """

    tumor_radius_mm: tuple[float, float] = (12.0, 28.0)  # whole-tumor equivalent radius range
    deformation_mm: float = 4.0  # std of the smooth random per-subject deformation
    bias_field: float = 0.2  # amplitude of the smooth multiplicative bias field (0 = none)
    noise: float = 0.03  # Rician noise std as a fraction of the white-matter intensity
    core_fraction: tuple[float, float] = (0.3, 0.6)  # range of (necrosis + enhancing) / whole
    necrosis_probability: float = 0.8  # probability that the core has a necrotic centre
    intensity_jitter: float = 0.12  # per-subject relative variation of tissue intensities

    def __post_init__(self) -> None:
        for name in ("tumor_radius_mm", "core_fraction"):
            value = getattr(self, name)
            if len(value) != 2:
                raise ValueError(f"{name} must be a (min, max) pair, got {value}")
            lo, hi = value
            if not 0 < lo <= hi or (name == "core_fraction" and hi >= 1):
                raise ValueError(f"{name} must satisfy 0 < min <= max, got {getattr(self, name)}")
        if self.tumor_radius_mm[1] > 45:
            raise ValueError(f"tumor_radius_mm max must be <= 45, got {self.tumor_radius_mm}")
        for name in ("deformation_mm", "bias_field", "noise", "intensity_jitter"):
            value = getattr(self, name)
            if not 0 <= value < (1 if name in ("bias_field", "intensity_jitter") else 50):
                raise ValueError(f"{name} out of range, got {value}")
        if not 0 <= self.necrosis_probability <= 1:
            raise ValueError(
                f"necrosis_probability must be in [0, 1], got {self.necrosis_probability}"
            )


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


def _resample_anatomy(
    rng: np.random.Generator, config: SyntheticConfig
) -> tuple[tuple[slice, ...], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deform the MNI templates into a crop of the BraTS grid (one map_coordinates per map).

    Returns:
        (box, brain bool, gm, wm, csf); maps are float32 of the box shape, 0 outside brain.
    """
    lin, offset, scale = _transform(rng)
    mask, gm, wm = _templates()
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
    prob = ndi.map_coordinates(mask, coords, order=1, output=_F32)
    brain = prob > 0.5
    inside = coords[:, brain]
    maps = []
    for tissue in (gm, wm):
        full = np.zeros(shape, dtype=_F32)
        full[brain] = ndi.map_coordinates(tissue, inside, order=1, output=_F32)
        maps.append(full)
    csf = np.where(brain, np.clip(prob - maps[0] - maps[1], 0, None), 0).astype(_F32)
    return box, brain, maps[0], maps[1], csf


def _top_n(field: np.ndarray, valid: np.ndarray, n: int) -> np.ndarray:
    """Boolean mask of the ``n`` highest values of ``field`` among ``valid`` voxels."""
    vals = field[valid]
    n = int(min(max(n, 1), vals.size))
    thr = np.partition(vals, vals.size - n)[vals.size - n]
    return valid & (field >= thr)


def _tumor_centre(
    rng: np.random.Generator, brain: np.ndarray, wm: np.ndarray, r: float
) -> np.ndarray:
    """Pick a supratentorial, mostly white-matter lesion centre away from the brain border."""
    depth = ndi.distance_transform_edt(brain[::2, ::2, ::2]) * 2.0
    ks = np.nonzero(brain.any(axis=(0, 1)))[0]
    k_min = (ks[0] + 0.35 * (ks[-1] - ks[0])) / 2.0
    upper = np.arange(depth.shape[2])[None, None, :] >= k_min
    cand = np.argwhere((depth > 0.5 * r + 6) & (wm[::2, ::2, ::2] > 0.5) & upper)
    if cand.size == 0:
        cand = np.argwhere(depth == depth.max())
    return cand[rng.integers(len(cand))] * 2


def _core_field(
    rng: np.random.Generator, loc: tuple[slice, ...], centre: np.ndarray, r_core: float
) -> np.ndarray:
    """Core "insideness" field: a random rotated ellipsoid perturbed by smooth lumps."""
    grids = np.meshgrid(
        *[np.arange(s.start, s.stop) - c for s, c in zip(loc, centre, strict=True)], indexing="ij"
    )
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    axes = np.exp(rng.uniform(-0.25, 0.25, 3))
    axes = axes / np.cbrt(axes.prod()) * r_core
    rho = sum(
        ((rot[0, i] * grids[0] + rot[1, i] * grids[1] + rot[2, i] * grids[2]) / axes[i]) ** 2
        for i in range(3)
    )
    lumps = _lumps(rng, grids[0].shape, (r_core / 1.5, 5.0), (0.3, 0.12))
    return 1 - np.sqrt(rho).astype(_F32) + lumps


def _paint_tumor(
    rng: np.random.Generator, brain: np.ndarray, wm: np.ndarray, config: SyntheticConfig
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Paint one irregular nested lesion with BraTS labels (1 necrosis, 2 edema, 4 enhancing).

    Returns:
        (seg uint8 of the box shape, local slices bounding the lesion region).
    """
    r_wt = rng.uniform(*config.tumor_radius_mm)
    frac = rng.uniform(*config.core_fraction)
    r_core = r_wt * frac ** (1 / 3)
    centre = _tumor_centre(rng, brain, wm, r_wt)
    half = int(np.ceil(1.7 * r_wt + 6))
    loc = tuple(
        slice(max(c - half, 0), min(c + half, s)) for c, s in zip(centre, brain.shape, strict=True)
    )
    valid, shape = brain[loc], brain[loc].shape
    core_f = _core_field(rng, loc, centre, r_core)
    core = _largest(_top_n(core_f, valid, round(frac * 4 / 3 * np.pi * r_wt**3))) & valid
    dist = ndi.distance_transform_edt(~core).astype(_F32)
    wt_f = -dist / r_wt + _lumps(rng, shape, (r_wt / 2, 6.0), (0.35, 0.15)) + 0.3 * wm[loc]
    wt_f[dist <= 2.0] += 2.0  # a thin edema shell always wraps the core
    whole = _top_n(wt_f, valid, round(4 / 3 * np.pi * r_wt**3)) | core
    lab, _ = ndi.label(whole)
    whole = np.isin(lab, np.unique(lab[core]))
    seg_loc = np.where(whole, 2, 0).astype(np.uint8)
    seg_loc[core] = 4
    depth = ndi.distance_transform_edt(core)
    rim = rng.uniform(0.2, 0.4) * r_core * (1 + _lumps(rng, shape, (r_core / 2, 5.0), (0.5, 0.2)))
    if rng.random() < config.necrosis_probability:
        seg_loc[core & (depth > np.maximum(rim, 1.5))] = 1
    seg = np.zeros(brain.shape, dtype=np.uint8)
    seg[loc] = seg_loc
    return seg, loc


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


def _largest(mask: np.ndarray) -> np.ndarray:
    """Largest connected component of ``mask`` with holes filled."""
    lab, n = ndi.label(mask)
    if n > 1:
        mask = lab == np.argmax(np.bincount(lab.ravel())[1:]) + 1
    return ndi.binary_fill_holes(mask)


def _contrast(
    rng: np.random.Generator,
    modality: str,
    tissues: tuple[np.ndarray, ...],
    seg: np.ndarray,
    loc: tuple[slice, ...],
    config: SyntheticConfig,
) -> np.ndarray:
    """Synthesise one modality (float32, box shape) from tissue maps and tumor labels."""
    brain, gm, wm, csf = tissues
    jit = config.intensity_jitter
    i_csf, i_gm, i_wm, *i_tum = np.array(_INTENSITY[modality]) * rng.uniform(1 - jit, 1 + jit, 6)
    img = csf * _F32(i_csf) + gm * _F32(i_gm) + wm * _F32(i_wm)
    sub, shape = img[loc], img[loc].shape
    texture = 1 + 0.1 * _smooth_field(rng, shape, tuple(max(3, s // 6) for s in shape))
    blurred = [ndi.gaussian_filter((seg[loc] == lab).astype(_F32), 0.8) for lab in (2, 1, 4)]
    sub *= 1 - sum(blurred)
    for weight, value in zip(blurred, i_tum, strict=True):
        sub += weight * texture * _F32(value)
    bias = _smooth_field(rng, img.shape, (3, 3, 3))
    img *= np.exp(_F32(config.bias_field) * bias / max(float(np.abs(bias).max()), 1e-6))
    sigma = config.noise * i_wm
    vals = img[brain]
    n1, n2 = (rng.standard_normal(vals.size, dtype=_F32) * _F32(sigma) for _ in range(2))
    img[brain] = np.sqrt((vals + n1) ** 2 + n2**2) * _F32(rng.uniform(0.7, 1.4))
    img[~brain] = 0
    return img


def generate_subject(
    seed: int, index: int, config: SyntheticConfig | None = None
) -> dict[str, np.ndarray]:
    """Generate one deterministic synthetic BraTS-like subject.

    Args:
        seed: Cohort seed.
        index: Subject index within the cohort; (seed, index) fully determines the output.
        config: Generator knobs; defaults to ``SyntheticConfig()``.

    Returns:
        Dict with "t1", "t1ce", "t2", "flair" (int16, shape (240, 240, 155), axes (x, y, z),
        z axial, exactly 0 outside the brain and >= 1 inside), "seg" (uint8, same shape, labels
        0 background, 1 necrosis, 2 edema, 4 enhancing) and "affine" (float64 (4, 4),
        ``BRATS_AFFINE``).

    Raises:
        ValueError: If ``seed`` or ``index`` is negative.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    config = config or SyntheticConfig()
    start = time.perf_counter()
    rng = np.random.default_rng([seed, index])
    box, brain, gm, wm, csf = _resample_anatomy(rng, config)
    seg_box, loc = _paint_tumor(rng, brain, wm, config)
    out: dict[str, np.ndarray] = {}
    for modality in MODALITIES:
        img = _contrast(rng, modality, (brain, gm, wm, csf), seg_box, loc, config)
        vol = np.zeros(BRATS_SHAPE, dtype=np.int16)
        vol[box] = np.where(brain, np.clip(np.rint(img), 1, 32767), 0).astype(np.int16)
        out[modality] = vol
    out["seg"] = np.zeros(BRATS_SHAPE, dtype=np.uint8)
    out["seg"][box] = seg_box
    out["affine"] = BRATS_AFFINE.copy()
    logger.debug("subject (%d, %d) in %.2f s", seed, index, time.perf_counter() - start)
    return out
