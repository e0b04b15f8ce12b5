"""3D training data: patch sampling (foreground share, padding, determinism) and 3D augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainseg.data.preprocess import stack_volume
from brainseg.training.augment3d import affine, augment_patch, flip_axes, rotation
from brainseg.training.patches import PatchDataset, crop_padded, patch_start
from brainseg.training.sampling import BatchPlan
from tests.training.conftest import augment_cfg, write_store

PATCH = (8, 16, 16)


@pytest.fixture
def patch_store(tmp_path):
    return write_store(tmp_path, {"S-0": "train", "S-1": "train", "S-2": "train"})


def folders(root):
    return sorted((root / "slices").iterdir())


def test_stack_volume_puts_modalities_first_over_the_stored_slices(patch_store):
    image = np.load(folders(patch_store)[0] / "image.npy")
    volume = stack_volume(image)
    assert volume.shape == (4, *image.shape[:1], *image.shape[2:]) and volume.dtype == np.float32
    assert np.array_equal(volume[2, 5], image[5, 2].astype(np.float32))


def test_tumour_centred_items_hold_tumour_and_the_plan_keeps_its_share(patch_store):
    dataset = PatchDataset(folders(patch_store), PATCH)
    n = len(folders(patch_store))
    assert len(dataset) == 2 * n and dataset.has_tumor.tolist() == [False] * n + [True] * n
    for seed in range(20):
        image, label = dataset.sample((n + seed % n, seed))
        assert image.shape == (4, *PATCH) and label.shape == PATCH
        assert (label > 0).any()  # the patch holds the tumour voxel it was centred on
    plan = BatchPlan(dataset.has_tumor, 6, 60, 1 / 3, seed=0, uniform=dataset.uniform)
    for batch in plan.epoch(1):
        tumour = sum(idx >= n for idx, _ in batch)
        assert tumour == 2  # exactly tumor_fraction of every batch, the rest uniform


def test_a_volume_smaller_than_the_patch_is_zero_padded(tmp_path):
    root = write_store(tmp_path, {"S-0": "train"}, n_slices=6, size=32)
    dataset = PatchDataset(folders(root), (16, 40, 24))
    source = np.load(folders(root)[0] / "image.npy").astype(np.float32)
    volume = np.moveaxis(source, 1, 0)  # (m, s, h, w)
    for item in [(0, 3), (1, 4), (0, 9)]:
        image, label = dataset.sample(item)
        assert image.shape == (4, 16, 40, 24) and label.shape == (16, 40, 24)
        # the 6 slices and 32 rows lie whole inside the patch, zero around them; 24 of the
        # 32 columns are cropped
        found = [(o, r, x) for o in range(11) for r in range(9) for x in range(9)
                 if np.array_equal(image[:, o:o + 6, r:r + 32], volume[..., x:x + 24])]
        assert len(found) == 1
        o, r, _ = found[0]
        assert np.abs(image).sum() == pytest.approx(np.abs(image[:, o:o + 6, r:r + 32]).sum())
        assert not label[:o].any() and not label[o + 6:].any()


def test_patch_start_and_crop_padded():
    assert patch_start(0, 100, 64) == 0 and patch_start(99, 100, 64) == 36
    assert patch_start(50, 100, 64) == 18 and patch_start(3, 10, 16) == -5
    assert patch_start(0, 10, 16) == -6 and patch_start(9, 10, 16) == 0  # the volume stays whole
    a = np.arange(10)
    assert crop_padded(a, (-2,), (5,)).tolist() == [0, 0, 0, 1, 2]
    assert crop_padded(a, (8,), (4,)).tolist() == [8, 9, 0, 0]


def test_items_are_deterministic_and_depend_on_their_seed(patch_store):
    on = {k: {"p": 1.0} for k in ("flip", "affine", "gamma", "brightness_contrast", "noise",
                                  "blur")}
    cfg = augment_cfg(**on)
    cfg["elastic"]["p"] = 0.0
    first = PatchDataset(folders(patch_store), PATCH, cfg)
    second = PatchDataset(folders(patch_store), PATCH, cfg)
    a, b = first[(4, 11)], second[(4, 11)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = first[(4, 12)]
    assert not torch.equal(a[0], c[0])
    assert set(np.unique(a[1].numpy())) <= {0, 1, 2, 4}


def test_flips_mirror_every_axis_and_keep_image_and_labels_aligned():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 4, 5, 6)).astype(np.float32)
    label = (image[0] > 0).astype(np.uint8)
    flipped, lab = flip_axes(image, label, 1.0, np.random.default_rng(1))
    assert np.array_equal(flipped, image[:, ::-1, ::-1, ::-1])
    assert np.array_equal(lab, (flipped[0] > 0).astype(np.uint8))


def test_affine_identity_and_a_quarter_turn_are_exact():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(1, 6, 6, 6)).astype(np.float32)
    label = rng.integers(0, 3, size=(6, 6, 6)).astype(np.uint8)
    same = {"rotate_deg": 0.0, "scale": [1.0, 1.0], "shift": 0.0}
    out, lab = affine(image, label, same, rng)
    assert np.allclose(out, image, atol=1e-5) and np.array_equal(lab, label)
    quarter = rotation(np.array([90.0, 0.0, 0.0]))  # about d: the (h, w) plane turns
    assert np.allclose(np.abs(quarter), [[1, 0, 0], [0, 0, 1], [0, 1, 0]], atol=1e-12)


def test_augmentation_keeps_the_background_zero_and_labels_valid():
    rng = np.random.default_rng(0)
    image = np.zeros((4, 12, 16, 16), np.float32)
    image[:, 2:10, 3:13, 3:13] = rng.normal(size=(4, 8, 10, 10))
    label = np.zeros((12, 16, 16), np.uint8)
    label[4:8, 6:10, 6:10] = 4
    cfg = augment_cfg(**{k: {"p": 1.0} for k in ("gamma", "brightness_contrast", "noise",
                                                 "blur")})
    cfg["flip"]["p"] = cfg["affine"]["p"] = 0.0
    out, lab = augment_patch(image, label, cfg, np.random.default_rng(3))
    assert np.array_equal(lab, label)
    assert np.all(out[:, image.any(0) == 0] == 0) and not np.allclose(out, image)
    # one draw per modality: the channels change differently
    change = [(out[c] - image[c])[image.any(0)].std() for c in range(4)]
    assert len({round(float(v), 6) for v in change}) == 4
