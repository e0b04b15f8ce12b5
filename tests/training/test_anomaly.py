"""Training of the anomaly autoencoder: the masked loss, the training mask, the patches."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.training.anomaly import (
    Volume,
    as_volume,
    channel_indices,
    masked_mse,
    patch_corners,
    train_autoencoder,
    training_mask,
)


def test_the_masked_loss_ignores_the_voxels_outside_the_mask():
    target = torch.randn(2, 3, 4, 4, 4)
    mask = torch.ones(2, 1, 4, 4, 4)
    mask[:, :, 1:3, 1:3, 1:3] = 0  # the tumour
    recon = target.clone().requires_grad_(True)
    with torch.no_grad():
        recon[:, :, 1:3, 1:3, 1:3] += 100.0  # wildly wrong, but only inside the tumour
    loss = masked_mse(recon, target, mask)
    assert loss.item() == 0.0
    recon2 = (target + 1.0).requires_grad_(True)
    loss2 = masked_mse(recon2, target, mask)
    assert loss2.item() == pytest.approx(1.0)
    loss2.backward()
    assert not recon2.grad[:, :, 1:3, 1:3, 1:3].any()
    assert recon2.grad[:, :, 0].abs().min() > 0
    assert masked_mse(recon2, target, torch.zeros_like(mask)).item() == 0.0


def tiny_volume(tumour_box=(slice(3, 5),) * 3, shape=(8, 8, 8)) -> Volume:
    rng = np.random.default_rng(0)
    image = np.zeros((shape[0], 2, *shape[1:]), np.float16)
    image[:, :, 1:-1, 1:-1] = rng.standard_normal((shape[0], 2, shape[1] - 2, shape[2] - 2))
    labels = np.zeros(shape, np.uint8)
    labels[tumour_box] = 2
    return as_volume("tiny", image, labels, [1])


def test_training_mask_is_the_brain_minus_the_dilated_tumour():
    volume = tiny_volume()
    assert volume.image.shape == (1, 8, 8, 8) and volume.tumour.sum() == 8
    inner = training_mask(volume, 0)
    assert not (inner & volume.tumour).any() and (inner | volume.tumour).sum() == \
        volume.brain.sum()
    grown = training_mask(volume, 1)
    assert grown.sum() < inner.sum()
    assert not grown[2, 3, 3] and inner[2, 3, 3]  # one voxel away from the tumour
    assert not (grown & ~volume.brain).any()


def test_patches_lie_inside_the_volume_around_mask_voxels():
    mask = np.zeros((10, 12, 14), bool)
    mask[9, 0, 13] = True  # one voxel in a corner: every patch is moved to hold it
    mask2 = np.zeros((10, 12, 14), bool)
    corners = patch_corners([mask, mask2], (4, 4, 4), 20, np.random.default_rng(0))
    assert all(c == (0, 6, 0, 10) for c in corners)
    with pytest.raises(BrainsegError, match="no training voxel"):
        patch_corners([mask2], (4, 4, 4), 1, np.random.default_rng(0))


def test_channel_indices_name_what_is_missing():
    assert channel_indices(("t1", "t1ce", "flair"), [], "store") == [0, 1, 2]
    assert channel_indices(("t1", "t1ce", "flair"), ["flair", "t1"], "store") == [2, 0]
    with pytest.raises(BrainsegError, match=r"store: anomaly\.modalities t2 not among"):
        channel_indices(("t1", "t1ce", "flair"), ["t2"], "store")


def test_two_trainings_give_the_same_weights_and_another_seed_does_not(params):
    cfg = {**params["anomaly"], "training_epochs": 2, "patches_per_epoch": 4}
    volumes = [tiny_volume(), tiny_volume(tumour_box=(slice(0, 0),) * 3)]
    masks = [training_mask(v, 1) for v in volumes]
    torch.set_num_threads(1)

    def weights(seed):
        model, history = train_autoencoder(volumes, masks, cfg, seed)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        return buffer.getvalue(), history

    (a, history), (b, _), (c, _) = weights(3), weights(3), weights(4)
    assert a == b and a != c
    assert [row["epoch"] for row in history] == [1, 2]
    assert all(np.isfinite(row["loss"]) for row in history)
