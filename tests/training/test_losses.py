from __future__ import annotations

import math

import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.models.outputs import class_targets, region_targets
from brainseg.models.unet import build_model
from brainseg.training.losses import (
    SegmentationLoss,
    deep_supervision_weights,
    downsample_labels,
)

TINY = torch.tensor([[[0, 1], [2, 4]]])  # one 2x2 slice with every BraTS label


def random_labels(n=2, h=8, w=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([0, 1, 2, 4])
    return values[torch.randint(0, 4, (n, h, w), generator=g)]


def perfect_logits(labels, output, scale=40.0):
    if output == "regions":
        return (region_targets(labels) * 2 - 1) * scale
    one_hot = torch.nn.functional.one_hot(class_targets(labels), 4).permute(0, 3, 1, 2)
    return (one_hot * 2 - 1).float() * scale


@pytest.mark.parametrize("output", ["regions", "softmax"])
def test_perfect_confident_logits_give_zero_loss(output):
    labels = random_labels()
    loss = SegmentationLoss(output, 1.0, 1.0)(perfect_logits(labels, output), labels)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_regions_loss_of_zero_logits_by_hand():
    # probabilities 0.5 on 4 pixels; WT, TC, ET cover 3, 2, 1 pixels: Dice (T + 1) / (T + 3)
    dice_loss = 1 - (4 / 6 + 3 / 5 + 2 / 4) / 3
    loss = SegmentationLoss("regions", 2.0, 0.5)(torch.zeros(1, 3, 2, 2), TINY)
    assert loss.item() == pytest.approx(2 * dice_loss + 0.5 * math.log(2), rel=1e-6)


def test_softmax_loss_of_zero_logits_by_hand():
    # probabilities 1/4; each foreground class covers 1 of 4 pixels: Dice 1.5 / 3
    loss = SegmentationLoss("softmax", 2.0, 0.5)(torch.zeros(1, 4, 2, 2), TINY)
    assert loss.item() == pytest.approx(2 * 0.5 + 0.5 * math.log(4), rel=1e-6)


@pytest.mark.parametrize(("output", "channels"), [("regions", 3), ("softmax", 4)])
def test_loss_is_positive_finite_and_differentiable(output, channels):
    labels = random_labels(seed=1)
    logits = torch.randn(2, channels, 8, 8, requires_grad=True)
    loss = SegmentationLoss(output, 1.0, 1.0)(logits, labels)
    assert loss.ndim == 0 and torch.isfinite(loss) and loss.item() > 0.1
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    wrong = SegmentationLoss(output, 1.0, 1.0)(-perfect_logits(labels, output, 5.0), labels)
    assert wrong.item() > loss.item()


def test_deep_supervision_weights_halve_and_sum_to_one():
    assert deep_supervision_weights(1) == [1.0]
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])


def test_labels_are_downsampled_by_the_block_centre():
    labels = random_labels(h=8, w=8)
    assert torch.equal(downsample_labels(labels, (4, 4)), labels[:, 1::2, 1::2])
    assert torch.equal(downsample_labels(labels, (2, 2)), labels[:, 2::4, 2::4])
    assert downsample_labels(labels, (8, 8)) is labels
    assert downsample_labels(random_labels(h=37, w=50), (19, 25)).shape == (2, 19, 25)


@pytest.mark.parametrize(("output", "channels"), [("regions", 3), ("softmax", 4)])
def test_deep_supervision_weights_each_level(output, channels):
    labels = random_labels(h=8, w=8, seed=2)
    loss_fn = SegmentationLoss(output, 1.0, 1.0)
    aux = torch.zeros(2, channels, 4, 4)  # wrong (uninformed) half-resolution output
    aux_alone = loss_fn(aux, labels[:, 1::2, 1::2])
    assert aux_alone.item() > 0.5
    total = loss_fn([perfect_logits(labels, output), aux], labels)
    assert total.item() == pytest.approx(aux_alone.item() / 3, rel=1e-5)
    coarse = torch.zeros(2, channels, 2, 2)
    three = loss_fn([perfect_logits(labels, output), perfect_logits(labels[:, 1::2, 1::2], output),
                     coarse], labels)
    assert three.item() == pytest.approx(loss_fn(coarse, labels[:, 2::4, 2::4]).item() / 7,
                                         rel=1e-5)


@pytest.mark.parametrize(("output", "channels"), [("regions", 3), ("softmax", 4)])
def test_bf16_logits_give_a_float32_loss(output, channels):
    labels = random_labels(seed=3)
    logits = torch.randn(2, channels, 8, 8).bfloat16()
    loss_fn = SegmentationLoss(output, 1.0, 1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(logits, labels)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(loss_fn(logits.float(), labels).item(), rel=1e-6)


@pytest.mark.parametrize(("arch", "output"), [("unet", "softmax"), ("attention_unet", "regions")])
def test_model_and_loss_train_step_under_bf16_autocast(arch, output):
    model = build_model({"arch": arch, "output": output, "base_channels": 4, "depth": 3,
                         "norm": "batch", "dropout": 0.0, "deep_supervision": 2})
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 37, 50).contiguous(memory_format=torch.channels_last)
    labels = random_labels(h=37, w=50, seed=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = SegmentationLoss(output, 1.0, 1.0)(model(x), labels)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_output_mode_is_refused():
    with pytest.raises(BrainsegError, match="unknown output mode 'sigmoid'"):
        SegmentationLoss("sigmoid", 1.0, 1.0)
