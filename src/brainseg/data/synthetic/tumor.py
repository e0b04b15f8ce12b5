"""Tumour phase: lesion fields, painting and nested labels, and partial-volume weights.

Each planned lesion gets a lobulated core field and an edema front that spreads along white
matter (on a 2 mm grid), thresholded to its planned volumes and combined into nested BraTS
labels (1 necrosis / non-enhancing core, 2 edema, 4 enhancing); the label map then yields the
partial-volume tumour weights used by the contrast phase.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from brainseg.data.boxes import bounding_box
from brainseg.data.synthetic.common import F32, Lesion, smooth_lumps
from brainseg.data.synthetic.config import SyntheticConfig

_FRONT_STEPS = 10  # iterations of the edema front (2 mm grid, 3 mm Gaussian per step)
_LABEL_RANK = np.array([0, 3, 1, 0, 2], dtype=np.uint8)  # merge priority: 1 > 4 > 2 > 0


def _box_around(
    centre: np.ndarray, half: float, shape: tuple[int, ...]
) -> tuple[slice, ...]:
    """Slices of a cube of half-size ``half`` around ``centre``, clipped to ``shape``."""
    h = int(np.ceil(half))
    return tuple(
        slice(max(int(c) - h, 0), min(int(c) + h + 1, n))
        for c, n in zip(centre, shape, strict=True)
    )


def _threshold(field: np.ndarray, valid: np.ndarray, n: float) -> float:
    """Value of the ``n``-th highest ``field`` voxel among ``valid`` voxels."""
    vals = field[valid]
    n = int(min(max(round(n), 1), vals.size))
    return float(np.partition(vals, vals.size - n)[vals.size - n])


def _upsample2(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear x2 upsampling of a field sampled at even voxels back to ``shape``."""
    for axis, n in enumerate(shape):
        a = np.moveaxis(a, axis, 0)
        out = np.empty((2 * a.shape[0], *a.shape[1:]), dtype=F32)
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
    lumps = smooth_lumps(rng, shape, (r_core / 3.0, 2.5), (0.35, 0.12))
    return 1 - np.sqrt(rho).astype(F32) + lumps


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
    lumps = smooth_lumps(rng, shape, (10.0, 4.0), (1.0, 0.4))
    weight = np.minimum(np.exp(F32(-bias) * (1 - wm) + lumps), 1) * valid
    u = core.astype(F32)
    for _ in range(_FRONT_STEPS):
        u = np.maximum(u, weight * ndi.gaussian_filter(u, 1.5, truncate=3.0))
    return u


def _lesion_fields(
    rng: np.random.Generator,
    lesion: Lesion,
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
        (2.0 * np.arange(n, dtype=F32) - c).reshape([-1 if a == i else 1 for a in range(3)])
        for i, (n, c) in enumerate(zip(valid2.shape, centre, strict=True))
    ]
    core_f = _core_field(rng, grids, r_core)
    vol = 4 / 3 * np.pi * r_wt**3 / 8.0  # in 2 mm voxels
    t_core = _threshold(core_f, valid2, lesion.core_fraction * vol)
    core2 = (core_f >= t_core) & valid2
    front = _edema_front(rng, core2, wm2, valid2, config.edema_wm_bias)
    t_wt = max(_threshold(front, valid2, vol), 1e-30)  # never take the unreached zeros
    depth = ndi.distance_transform_edt(core2).astype(F32) * 2.0
    rim = rng.uniform(0.15, 0.35) * r_core * (1 + smooth_lumps(rng, core2.shape, (4.0,), (0.4,)))
    return [core_f, front, depth - np.maximum(rim, 2.0)], (t_core, t_wt)


def _paint_lesion(
    rng: np.random.Generator,
    lesion: Lesion,
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
    cb = bounding_box(core, 3)
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


def paint_tumors(
    rng: np.random.Generator,
    lesions: list[Lesion],
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


def tumor_weights(
    seg: np.ndarray, edema_falloff: float = 0.0
) -> tuple[tuple[slice, ...], list[np.ndarray]]:
    """Partial-volume weights of edema, label 1 and enhancing tumour around the lesions.

    With ``edema_falloff`` x > 0 the edema weight fades from the core outward: at a voxel a
    fraction t of the way from the core (t = d_core / (d_core + d_out), Euclidean distances
    to the tumour core and to the outside of the whole tumour) it is scaled by 1 - x t, so
    the outermost edema is nearly normal tissue, as infiltrative edema is on real scans.

    Returns:
        (slices bounding the tumours with a margin, [w2, w1, w4] float32 of that shape);
        without any tumour, a one-voxel box of zero weights.
    """
    tloc = bounding_box(seg > 0, 4)
    if tloc is None:  # a tumour-free brain: one voxel of zero weights
        tloc = (slice(0, 1),) * seg.ndim
    sub = seg[tloc]
    weights = [
        ndi.gaussian_filter((sub == lab).astype(F32), 0.8, truncate=3.0) for lab in (2, 1, 4)
    ]
    if edema_falloff > 0:
        weights[0] *= 1 - F32(edema_falloff) * _edema_depth(sub)
    return tloc, weights


def _edema_depth(sub: np.ndarray) -> np.ndarray:
    """Relative position in the edema, 0 at the core and 1 at the outer border (float32).

    Outside the whole tumour the value of the nearest edema voxel is kept (the partial-volume
    weight blurs across that border); a tumour without a core counts as all border.
    """
    whole, core = sub > 0, (sub == 1) | (sub == 4)
    d_out = ndi.distance_transform_edt(whole)
    d_core = ndi.distance_transform_edt(~core) if core.any() else np.ones(sub.shape)
    t = np.where(whole, d_core / np.maximum(d_core + d_out, 1e-6), 1.0)
    return t.astype(F32)
