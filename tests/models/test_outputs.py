from __future__ import annotations

import numpy as np
import pytest
import torch

from brainseg.data.labels import labels_to_regions
from brainseg.errors import BrainsegError
from brainseg.models.outputs import (
    class_targets,
    out_channels,
    region_probabilities,
    region_targets,
)


def test_region_targets_match_the_numpy_definition():
    labels = torch.tensor(np.random.default_rng(0).choice([0, 1, 2, 4], size=(2, 5, 7)))
    expected = labels_to_regions(labels.numpy()).transpose(1, 0, 2, 3)
    assert torch.equal(region_targets(labels), torch.from_numpy(expected).float())
    assert class_targets(labels).unique().tolist() == [0, 1, 2, 3]
    assert torch.equal(class_targets(labels) == 3, labels == 4)


def test_softmax_region_probabilities_are_nested_and_exact_for_confident_logits():
    logits = torch.randn(3, 4, 6, 6)
    p = region_probabilities(logits, "softmax")
    assert p.shape == (3, 3, 6, 6)
    assert bool((p[:, 2] <= p[:, 1] + 1e-6).all()) and bool((p[:, 1] <= p[:, 0] + 1e-6).all())
    labels = torch.tensor([[[0, 1], [2, 4]]])
    confident = torch.nn.functional.one_hot(class_targets(labels), 4).permute(0, 3, 1, 2) * 40.0
    assert torch.allclose(region_probabilities(confident, "softmax"), region_targets(labels),
                          atol=1e-6)
    assert torch.equal(region_probabilities(logits[:, :3], "regions"), torch.sigmoid(logits[:, :3]))


def test_unknown_output_mode_is_named():
    assert out_channels("softmax") == 4 and out_channels("regions") == 3
    with pytest.raises(BrainsegError, match="sigmoid3"):
        out_channels("sigmoid3")
    with pytest.raises(BrainsegError, match="sigmoid3"):
        region_probabilities(torch.zeros(1, 3, 2, 2), "sigmoid3")
