"""Figure of augmented training samples: a few tumour slices, each next to augmented versions.

Each augmented panel is titled with the transforms albumentations applied to it (and their
main drawn values, read from the Compose's `applied_transforms`), so the figure shows what
the `train.augment` params do. For a 3D model (`train.model.dims: 3`) the samples are
tumour-centred training patches and their 3D augmentations (`brainseg.training.augment3d`),
each shown by an axial and a coronal slice through its tumour. Everything is drawn from `seed`: the
same inputs give the same figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.data.modalities import MODALITIES
from brainseg.errors import BrainsegError
from brainseg.reporting.plots import REGION_COLORS, save_png
from brainseg.training.augment3d import augment_patch
from brainseg.training.data import SliceDataset, build_augmentation, slice_channels
from brainseg.training.patches import PatchDataset

FLAIR = MODALITIES.index("flair")
GREY = plt.get_cmap("gray").with_extremes(bad="black")


def transform_label(name: str, params: dict[str, Any], flair: int = FLAIR) -> str:
    """A short label of one applied transform, with its drawn values (FLAIR's where per channel).

    Args:
        name: the albumentations class name, as in `applied_transforms` (or as
            `augment_patch` reports a 3D transform).
        params: the params it was applied with.
        flair: the FLAIR channel (3 of the four BraTS modalities; 2 of t1 t1ce flair).
    """
    if name == "VerticalFlip":
        return "flip L-R"
    if name == "Flip3D":  # brainseg.training.augment3d
        return f"flip {params['axis']}"
    if name == "Affine3D":
        d, h, w = params["angles"]
        return f"rot {d:+.0f}/{h:+.0f}/{w:+.0f}°, zoom {params['zoom']:.2f}"
    if name == "Affine":
        return f"rot {params['rotate']:+.0f}°, zoom {params['scale']['x']:.2f}"
    if name == "ElasticTransform":
        return "elastic"
    if name == "BrainGamma":
        return f"gamma {params['gamma'][flair]:.2f}"
    if name == "BrainBrightnessContrast":
        return f"x{params['contrast'][flair]:.2f} {params['brightness'][flair]:+.2f}"
    if name == "BrainGaussianNoise":
        return f"noise {params['std']:.2f}"
    if name == "FloatGaussianBlur":
        return f"blur {params['sigma'][flair]:.1f} {params.get('unit', 'px')}"
    return name


def pick_tumour_slices(dataset: SliceDataset, n: int, seed: int) -> list[int]:
    """`n` dataset indices, one drawn from each of `n` consecutive runs (so different
    subjects or distant slices) of the tumour slices whose tumour is at least median size.

    Raises:
        BrainsegError: when no slice holds tumour.
    """
    tumour = np.flatnonzero(dataset.has_tumor)
    if not len(tumour):
        raise BrainsegError("no training slice holds tumour: nothing to show augmented")
    area = np.array([(dataset.sample(int(i))["mask"] > 0).sum() for i in tumour])
    large = tumour[area >= np.median(area)]
    rng = np.random.default_rng(seed)
    return [int(rng.choice(run)) for run in np.array_split(large, min(n, len(large)))]


def variant_seed(seed: int, index: int, variant: int) -> int:
    """The sample seed of one augmented panel."""
    return int(np.random.SeedSequence([seed, index, variant]).generate_state(1)[0])


def _panel(ax: plt.Axes, image: np.ndarray, mask: np.ndarray, vmin: float, vmax: float,
           title: str, channel: int = FLAIR) -> None:
    """FLAIR (`channel`) of an (x, y) slice shown anterior up (background black), with the
    WT, TC, ET contours."""
    flair = np.ma.masked_where(~(image != 0).any(axis=-1), image[..., channel])
    ax.imshow(flair.T, cmap=GREY, vmin=vmin, vmax=vmax)
    for region, region_mask in zip(REGIONS, labels_to_regions(mask), strict=True):
        if region_mask.any():
            ax.contour(region_mask.T, levels=[0.5], colors=REGION_COLORS[region],
                       linewidths=1.0)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def plot_augmentations(folders: list[Path], augment_cfg: dict[str, Any], seed: int,
                       out_png: Path, dpi: int, n_slices: int = 3, n_variants: int = 5) -> None:
    """Tumour slices (rows): the original, then `n_variants` augmentations under `augment_cfg`.

    Args:
        folders: slice folders of the normalize stage (`image.npy`, `label.npy`), e.g. the
            training subjects.
        augment_cfg: the `train.augment` params.
        seed: chooses the slices and the augmentations.
        out_png: the figure (written atomically).
        dpi: its resolution.
        n_slices: rows.
        n_variants: augmented versions per slice.

    Raises:
        BrainsegError: when no slice holds tumour, or the params cannot be built.
    """
    dataset = SliceDataset(folders, build_augmentation(augment_cfg, seed,
                                                       save_applied_params=True))
    plain = SliceDataset(folders)
    rows = pick_tumour_slices(plain, n_slices, seed)
    channel = slice_channels(folders)[0].index("flair")
    fig, axes = plt.subplots(len(rows), n_variants + 1, squeeze=False,
                             figsize=(1.9 * (n_variants + 1), 2.3 * len(rows)))
    for row, index in zip(axes, rows, strict=True):
        original = plain.sample(index)
        flair = original["image"][..., channel]
        vmin, vmax = np.percentile(flair[flair != 0], [0.5, 99.5]) if flair.any() else (0, 1)
        subject, k = plain.index[index]
        _panel(row[0], original["image"], original["mask"], vmin, vmax,
               f"original\n{Path(folders[subject]).name} slice {k}", channel)
        for col in range(1, n_variants + 1):
            out = dataset.sample((index, variant_seed(seed, index, col)))
            names = [transform_label(n, p, channel) for n, p in out.get("applied_transforms", [])]
            title = "\n".join([", ".join(names[i:i + 2]) for i in range(0, len(names), 2)])
            _panel(row[col], out["image"], out["mask"], vmin, vmax, title or "(none applied)",
                   channel)
    handles = [plt.Line2D([], [], color=REGION_COLORS[r], label=r) for r in REGIONS]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle("Training augmentation (FLAIR, label contours; same grey scale per row)",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    save_png(fig, Path(out_png), dpi)


def _views(image: np.ndarray, label: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The axial and coronal slices of a patch, image (c, d, h, w) and labels (d, h, w),
    through its tumour's centre (the patch centre without tumour), as (x, y, c) panels of
    `_panel` (coronal: superior up)."""
    inside = np.argwhere(label > 0)
    centre = inside.mean(axis=0) if len(inside) else np.asarray(label.shape) / 2
    d, h = int(centre[0]), int(centre[1])
    axial = (np.moveaxis(image[:, d], 0, -1), label[d])
    coronal = (np.moveaxis(image[:, ::-1, h, :], 0, -1).transpose(1, 0, 2),
               label[::-1, h, :].T)
    return [axial, coronal]


def plot_augmentations_3d(folders: list[Path], augment_cfg: dict[str, Any],
                          patch_size: list[int], seed: int, out_png: Path, dpi: int,
                          n_patches: int = 3, n_variants: int = 5) -> None:
    """Tumour-centred training patches (two rows each: axial and coronal slices through the
    tumour): the patch, then `n_variants` 3D augmentations of it under `augment_cfg`.

    Args:
        folders: the training subjects' folders of the normalize store.
        augment_cfg: the `train.augment` params.
        patch_size: `train.patch_size` (d, h, w).
        seed: chooses the subjects, the patches and the augmentations.
        out_png: the figure (written atomically).
        dpi: its resolution.
        n_patches: patches shown (from different subjects when there are enough).
        n_variants: augmented versions per patch.

    Raises:
        BrainsegError: when no training subject holds tumour.
    """
    plain = PatchDataset(folders, tuple(patch_size))
    tumour = np.flatnonzero(plain.has_tumor)
    if not len(tumour):
        raise BrainsegError("no training subject holds tumour: nothing to show augmented")
    rng = np.random.default_rng(seed)
    items = sorted(rng.choice(tumour, min(n_patches, len(tumour)), replace=False).tolist())
    channel = slice_channels(folders)[0].index("flair")
    fig, axes = plt.subplots(2 * len(items), n_variants + 1, squeeze=False,
                             figsize=(1.9 * (n_variants + 1), 2.1 * 2 * len(items)))
    for k, idx in enumerate(items):
        image, label = plain.sample((idx, variant_seed(seed, idx, 0)))
        flair = image[channel]
        vmin, vmax = np.percentile(flair[flair != 0], [0.5, 99.5]) if flair.any() else (0, 1)
        subject = Path(folders[idx % len(folders)]).name
        columns = [(image, label, f"patch of {subject}")]
        for col in range(1, n_variants + 1):
            applied: list[tuple[str, Any]] = []
            out = augment_patch(image, label, augment_cfg,
                                np.random.default_rng(variant_seed(seed, idx, col)), applied)
            names = [transform_label(n, v, channel) for n, v in applied]
            title = "\n".join([", ".join(names[i:i + 2]) for i in range(0, len(names), 2)])
            columns.append((*out, title or "(none applied)"))
        for col, (img, lab, title) in enumerate(columns):
            for view, (panel, mask) in enumerate(_views(img, lab)):
                ax = axes[2 * k + view, col]
                _panel(ax, panel, mask, vmin, vmax, title if view == 0 else "", channel)
                if col == 0:
                    ax.text(-0.06, 0.5, ("axial", "coronal")[view], rotation=90, fontsize=7,
                            ha="right", va="center", transform=ax.transAxes)
    handles = [plt.Line2D([], [], color=REGION_COLORS[r], label=r) for r in REGIONS]
    fig.legend(handles=handles, loc="lower center", ncol=3, frameon=False, fontsize=8)
    fig.suptitle("3D training augmentation (FLAIR slices through each patch's tumour, label "
                 "contours; same grey scale per patch)", fontsize=9)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    save_png(fig, Path(out_png), dpi)
