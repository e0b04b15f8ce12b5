from __future__ import annotations

import numpy as np
import torch

from brainseg.training.data import SliceDataset, build_augmentation
from tests.training.conftest import augment_cfg


def write_store(folder, n=3, size=16):
    folder.mkdir(parents=True)
    image = np.zeros((n, 4, size, size), np.float16)
    label = np.zeros((n, size, size), np.uint8)
    image[:, :, 2:6, 3:5] = 1.0
    label[:, 2:6, 3:5] = 4
    label[1] = 0  # slice 1 holds no tumour
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", label)
    return image, label


def test_dataset_yields_brats_labels_and_flips_image_and_mask_together(tmp_path):
    write_store(tmp_path / "S-1")
    plain = SliceDataset([tmp_path / "S-1"])
    x, y = plain[0]
    assert x.dtype == torch.float32 and x.shape == (4, 16, 16)
    assert y.dtype == torch.int64 and y.shape == (16, 16)
    assert set(torch.unique(y).tolist()) == {0, 4}
    flip = SliceDataset([tmp_path / "S-1"], build_augmentation(augment_cfg(flip={"p": 1.0}), 0))
    flipped_x, flipped_y = flip[0]
    # slices are (x, y): the left-right mirror reverses the rows
    assert torch.equal(flipped_x, torch.flip(x, dims=[1]))
    assert torch.equal(flipped_y, torch.flip(y, dims=[0]))


def test_has_tumor_marks_the_slices_with_a_label(tmp_path):
    write_store(tmp_path / "S-1")
    write_store(tmp_path / "S-2", n=2)
    dataset = SliceDataset([tmp_path / "S-1", tmp_path / "S-2"])
    assert dataset.has_tumor.dtype == bool
    assert dataset.has_tumor.tolist() == [True, False, True, True, False]
    assert [bool(dataset[i][1].any()) for i in range(len(dataset))] == dataset.has_tumor.tolist()


def test_unseeded_items_follow_the_transform_stream_of_its_seed(tmp_path):
    write_store(tmp_path / "S-1")
    aug = augment_cfg(flip={"p": 0.5}, affine={"p": 0.7, "rotate_deg": 30.0})
    runs = [[SliceDataset([tmp_path / "S-1"], build_augmentation(aug, 3))[i][0] for i in range(3)]
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))

