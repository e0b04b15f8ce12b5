"""Augmentation of the training slices: what each transform does, and per-sample seeding."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from brainseg.errors import BrainsegError
from brainseg.params import validate_params
from brainseg.training.data import AUGMENTATIONS, SliceDataset, build_augmentation
from tests.training.conftest import augment_cfg

STRONG = {  # every transform on, stronger than the defaults so that each one shows
    "flip": {"p": 1.0},
    "affine": {"p": 1.0, "rotate_deg": 30.0, "scale": [0.8, 1.2], "shift": 0.1},
    "elastic": {"p": 1.0, "alpha": 300.0, "sigma": 6.0},
    "gamma": {"p": 1.0, "range": [0.5, 2.0]},
    "brightness_contrast": {"p": 1.0, "brightness": 0.5, "contrast": 0.3},
    "noise": {"p": 1.0, "std": [0.1, 0.2]},
    "blur": {"p": 1.0, "sigma": [0.8, 1.5]},
}
SPATIAL = ("flip", "affine", "elastic")
INTENSITY = ("gamma", "brightness_contrast", "noise", "blur")


def tumour_slices(dataset: SliceDataset, n: int = 3) -> list[int]:
    """The n slices with the most tumour."""
    area = [int((dataset[i][1] > 0).sum()) for i in range(len(dataset))]
    return [int(i) for i in np.argsort(area)[::-1][:n]]


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@pytest.fixture
def store_with_et(real_store, tmp_path):
    """The real case (labels 0/1/2) with every other necrotic pixel relabelled 4, so that
    all BraTS values occur, and channel 0 replaced by 3 * (label > 0)."""
    folder = tmp_path / "S"
    shutil.copytree(real_store, folder)
    image, label = np.load(folder / "image.npy"), np.load(folder / "label.npy")
    label[:, ::2][label[:, ::2] == 1] = 4
    image[:, 0] = 3.0 * (label > 0)
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", label)
    return folder


def test_with_every_p_zero_the_output_is_the_input(real_store):
    plain = SliceDataset([real_store])
    off = SliceDataset([real_store], build_augmentation(augment_cfg(), 0))
    for i in (*tumour_slices(plain), 0, len(plain) - 1):
        for item in (i, (i, 123)):
            assert all(torch.equal(a, b) for a, b in zip(plain[i], off[item], strict=True))


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_each_transform_alone_changes_the_image_and_keeps_it_finite(real_store, name):
    plain = SliceDataset([real_store])
    aug = SliceDataset([real_store], build_augmentation(augment_cfg(**{name: STRONG[name]}), 0))
    i = tumour_slices(plain, 1)[0]
    (x0, y0), (x, y) = plain[i], aug[(i, 5)]
    assert x.dtype == torch.float32 and x.shape == x0.shape and torch.isfinite(x).all()
    assert not torch.equal(x, x0)
    if name in SPATIAL:
        assert not torch.equal(y, y0)
    else:
        assert torch.equal(y, y0)


@pytest.mark.parametrize("name", INTENSITY)
def test_intensity_transforms_act_on_the_brain_only_and_never_clip(real_store, name):
    plain = SliceDataset([real_store])
    aug = SliceDataset([real_store], build_augmentation(augment_cfg(**{name: STRONG[name]}), 0))
    i = tumour_slices(plain, 1)[0]
    (x0, _), (x, _) = plain[i], aug[(i, 9)]
    background = (x0 == 0).all(dim=0)
    assert background.any() and (x[:, background] == 0).all()
    assert (x[:, ~background] != x0[:, ~background]).any()
    assert x.min() < -1 and x.max() > 1  # z-scores, not [0, 1]


@pytest.mark.parametrize("name", SPATIAL)
def test_spatial_transforms_move_image_and_mask_alike(store_with_et, name):
    plain = SliceDataset([store_with_et])
    aug = SliceDataset([store_with_et], build_augmentation(augment_cfg(**{name: STRONG[name]}), 0))
    for i in tumour_slices(plain):
        for seed in (1, 2):
            y0, (x, y) = plain[i][1], aug[(i, seed)]
            moved, painted = y > 0, x[0] > 1.5  # channel 0 is 3 * (label > 0)
            assert dice(moved, y0 > 0) < 0.9  # the mask did move ...
            assert dice(painted, moved) > 0.9  # ... along with the image
            if name == "flip":
                assert torch.equal(painted, moved)


def test_labels_stay_brats_values_with_every_transform_on(store_with_et):
    dataset = SliceDataset([store_with_et], build_augmentation(STRONG, 0))
    seen = set()
    for i in tumour_slices(dataset, 4):
        for seed in range(3):
            x, y = dataset[(i, seed)]
            assert torch.isfinite(x).all() and y.dtype == torch.int64
            seen |= set(torch.unique(y).tolist())
    assert seen == {0, 1, 2, 4}


def test_brightness_contrast_is_affine_per_channel_in_z_score_units(real_store):
    compose = build_augmentation(augment_cfg(brightness_contrast=STRONG["brightness_contrast"]),
                                 4, save_applied_params=True)
    plain = SliceDataset([real_store])
    i = tumour_slices(plain, 1)[0]
    x0, data = plain.sample(i)["image"], SliceDataset([real_store], compose).sample((i, 4))
    (name, params), = data["applied_transforms"]
    assert name == "BrainBrightnessContrast" and len(params["contrast"]) == 4
    brain = (x0 != 0).any(axis=-1)
    expected = x0[brain] * np.float32(params["contrast"]) + np.float32(params["brightness"])
    np.testing.assert_allclose(data["image"][brain], expected, rtol=1e-6)
    assert (data["image"][~brain] == 0).all()


def test_gamma_keeps_each_channels_brain_mean_and_std(real_store):
    plain = SliceDataset([real_store])
    aug = SliceDataset([real_store], build_augmentation(augment_cfg(gamma=STRONG["gamma"]), 0))
    i = tumour_slices(plain, 1)[0]
    x0, x = plain.sample(i)["image"], aug.sample((i, 3))["image"]
    brain = (x0 != 0).any(axis=-1)
    np.testing.assert_allclose(x[brain].mean(0), x0[brain].mean(0), atol=1e-4)
    np.testing.assert_allclose(x[brain].std(0), x0[brain].std(0), rtol=1e-3)
    assert np.abs(x[brain] - x0[brain]).max() > 0.05


def test_noise_std_and_blur_smoothing_are_in_pixels_and_z_scores(real_store):
    plain = SliceDataset([real_store])
    i = tumour_slices(plain, 1)[0]
    x0 = plain.sample(i)["image"]
    brain = (x0 != 0).any(axis=-1)
    noisy = SliceDataset([real_store], build_augmentation(
        augment_cfg(noise={"p": 1.0, "std": [0.3, 0.3]}), 0)).sample((i, 1))["image"]
    assert np.std(noisy[brain] - x0[brain]) == pytest.approx(0.3, rel=0.05)
    blurred = SliceDataset([real_store], build_augmentation(
        augment_cfg(blur={"p": 1.0, "sigma": [1.0, 1.0]}), 0)).sample((i, 1))["image"]
    roughness = [np.abs(np.diff(a[brain.nonzero()[0].min():], axis=0)).mean()
                 for a in (x0, blurred)]
    assert roughness[1] < 0.8 * roughness[0]


def test_same_index_and_seed_give_the_same_sample_anywhere(real_store):
    cfg = augment_cfg(**{k: dict(v, p=0.5) for k, v in STRONG.items()})
    items = [(i, 1000 + i) for i in range(0, 130, 7)] + [(3, 1), (3, 2)]
    first = SliceDataset([real_store], build_augmentation(cfg, 0))
    other = SliceDataset([real_store], build_augmentation(cfg, 99))  # another stream seed
    _ = other[5], other[6]  # advances its own stream: must not matter
    direct = {item: first[item] for item in items}
    for item in reversed(items):
        assert all(torch.equal(a, b) for a, b in zip(direct[item], other[item], strict=True))
    for workers in (0, 2):
        loader = DataLoader(other, batch_size=4, sampler=items, num_workers=workers)
        images = torch.cat([x for x, _ in loader])
        labels = torch.cat([y for _, y in loader])
        assert torch.equal(images, torch.stack([direct[it][0] for it in items]))
        assert torch.equal(labels, torch.stack([direct[it][1] for it in items]))


def test_different_seeds_give_different_samples(real_store):
    dataset = SliceDataset([real_store], build_augmentation(STRONG, 0))
    i = tumour_slices(dataset, 1)[0]
    images = [dataset[(i, seed)][0] for seed in range(5)]
    assert all(not torch.equal(images[a], images[b]) for a in range(5) for b in range(a + 1, 5))


def test_elastic_smoothing_below_one_pixel_is_refused(params):
    """albumentations' ElasticTransform needs sigma >= 1: the schema says so."""
    params["train"]["augment"]["elastic"]["sigma"] = 0.5
    with pytest.raises(BrainsegError, match=r"train\.augment\.elastic\.sigma"):
        validate_params(params)


def test_transforms_with_the_same_p_are_drawn_independently(real_store):
    compose = build_augmentation(augment_cfg(flip={"p": 0.5}, blur={"p": 0.5, "sigma": [1, 1]}),
                                 0, save_applied_params=True)
    dataset = SliceDataset([real_store], compose)
    applied = [{name for name, _ in dataset.sample((0, seed))["applied_transforms"]}
               for seed in range(40)]
    flips = ["VerticalFlip" in a for a in applied]
    blurs = ["FloatGaussianBlur" in a for a in applied]
    assert 5 < sum(flips) < 35 and 5 < sum(blurs) < 35
    assert flips != blurs  # one seed per transform would apply both or neither, always
