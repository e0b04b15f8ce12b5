from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from brainseg.errors import BrainsegError
from brainseg.reporting.augmentation import plot_augmentations, plot_augmentations_3d
from brainseg.training.augment3d import augment_patch
from tests.training.conftest import augment_cfg, write_real_store

DEFAULTS = augment_cfg(flip={"p": 0.5}, affine={"p": 0.5}, gamma={"p": 0.5}, noise={"p": 0.5},
                       brightness_contrast={"p": 0.5}, blur={"p": 0.3})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_real_store(tmp_path_factory.mktemp("slices") / "TCGA-DU-7294")


def test_figure_shows_slices_and_variants_and_is_deterministic(folder, tmp_path):
    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "other_seed", "small")]
    for path, seed in zip(paths[:3], (7, 7, 8), strict=True):
        plot_augmentations([folder], DEFAULTS, seed, path, dpi=80)
    plot_augmentations([folder], DEFAULTS, 7, paths[3], dpi=80, n_slices=2, n_variants=2)
    pixels = matplotlib.image.imread(paths[0])
    small = matplotlib.image.imread(paths[3])
    # 3 rows x 6 panels of about 1.9 x 2.3 inches at 80 dpi (tight bounding box)
    assert 400 < pixels.shape[0] < 600 and 750 < pixels.shape[1] < 950
    assert small.shape[0] < pixels.shape[0] and small.shape[1] < pixels.shape[1] / 2
    assert pixels[..., :3].std() > 0.1  # images, not a blank page
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()


def test_figure_needs_a_tumour_slice(folder, tmp_path):
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    np.save(empty / "image.npy", np.load(folder / "image.npy"))
    np.save(empty / "label.npy", np.zeros_like(np.load(folder / "label.npy")))
    with pytest.raises(BrainsegError, match="no training slice holds tumour"):
        plot_augmentations([empty], DEFAULTS, 0, tmp_path / "x.png", dpi=60)
    assert not (tmp_path / "x.png").exists()


def test_3d_figure_shows_patches_in_two_views_and_is_deterministic(folder, tmp_path):
    """A 3D model's figure: tumour-centred patches, axial and coronal, 3D-augmented."""
    paths = [tmp_path / f"{name}.png" for name in ("a", "b", "other_seed")]
    for path, seed in zip(paths, (7, 7, 8), strict=True):
        plot_augmentations_3d([folder], DEFAULTS, [32, 64, 64], seed, path, dpi=60,
                              n_patches=1, n_variants=3)
    pixels = matplotlib.image.imread(paths[0])
    # 2 rows (axial, coronal) x 4 panels of about 1.9 x 2.1 inches at 60 dpi
    assert 180 < pixels.shape[0] < 300 and 380 < pixels.shape[1] < 520
    assert pixels[..., :3].std() > 0.1
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[0].read_bytes() != paths[2].read_bytes()
    empty = tmp_path / "EMPTY"
    empty.mkdir()
    np.save(empty / "image.npy", np.load(folder / "image.npy"))
    np.save(empty / "label.npy", np.zeros_like(np.load(folder / "label.npy")))
    with pytest.raises(BrainsegError, match="no training subject holds tumour"):
        plot_augmentations_3d([empty], DEFAULTS, [32, 64, 64], 0, tmp_path / "x.png", dpi=60)
    assert not (tmp_path / "x.png").exists()


def test_reporting_the_applied_3d_transforms_changes_no_draw():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(4, 8, 16, 16)).astype(np.float32)
    label = (rng.random((8, 16, 16)) > 0.7).astype(np.uint8)
    plain = augment_patch(image, label, DEFAULTS, np.random.default_rng(3))
    applied: list = []
    noted = augment_patch(image, label, DEFAULTS, np.random.default_rng(3), applied)
    assert all(np.array_equal(a, b) for a, b in zip(plain, noted, strict=True))
    names = [name for name, _ in applied]
    assert names and set(names) <= {"Flip3D", "Affine3D", "BrainGamma", "BrainBrightnessContrast",
                                    "BrainGaussianNoise", "FloatGaussianBlur"}
