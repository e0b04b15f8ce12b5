from __future__ import annotations

import matplotlib.image
import numpy as np
import pytest

from brainseg.errors import BrainsegError
from brainseg.reporting.augmentation import plot_augmentations
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
