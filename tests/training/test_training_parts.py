from __future__ import annotations

import numpy as np
import torch

from brainseg.training.data import SliceDataset, build_augmentation

AUG = {"flip": {"p": 1.0}, "affine": {"p": 0.0, "rotate_deg": 0.0, "scale": [1, 1], "shift": 0}}


def write_store(folder, n=3, size=16):
    folder.mkdir(parents=True)
    image = np.zeros((n, 4, size, size), np.float16)
    label = np.zeros((n, size, size), np.uint8)
    image[:, :, 2:6, 3:5] = 1.0
    label[:, 2:6, 3:5] = 4
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", label)
    return image, label


def test_dataset_yields_regions_and_flips_image_and_mask_together(tmp_path):
    write_store(tmp_path / "S-1")
    plain = SliceDataset([tmp_path / "S-1"])
    x, y = plain[0]
    assert x.dtype == torch.float32 and x.shape == (4, 16, 16) and y.shape == (3, 16, 16)
    assert torch.equal(y[0], y[2])  # enhancing only: WT == ET
    flipped_x, flipped_y = SliceDataset([tmp_path / "S-1"], build_augmentation(AUG, 0))[0]
    assert torch.equal(flipped_x, torch.flip(x, dims=[2]))
    assert torch.equal(flipped_y, torch.flip(y, dims=[2]))


def test_augmentation_is_seeded(tmp_path):
    write_store(tmp_path / "S-1")
    aug = {"flip": {"p": 0.5}, "affine": {"p": 0.7, "rotate_deg": 30.0, "scale": [0.9, 1.1],
                                          "shift": 0.05}}
    runs = [[SliceDataset([tmp_path / "S-1"], build_augmentation(aug, 3))[i][0] for i in range(3)]
            for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*runs, strict=True))
