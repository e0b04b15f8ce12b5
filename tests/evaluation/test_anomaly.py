"""The anomaly map's scoring, on constructed maps: no autoencoder involved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainseg.evaluation.anomaly import (
    choose_threshold,
    dice_curve,
    error_map,
    map_scores,
    reconstruct,
)
from brainseg.evaluation.metrics import dice
from brainseg.models.autoencoder import Autoencoder3d


def planted(seed: int, shape=(12, 20, 20)):
    """A brain ball with a tumour cube whose map values all exceed the rest's."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    brain = ((z - 6) / 6) ** 2 + ((y - 10) / 9) ** 2 + ((x - 10) / 9) ** 2 < 1
    tumour = np.zeros(shape, bool)
    tumour[4:8, 6:11, 6:11] = True
    tumour &= brain
    values = np.where(tumour, 2 + rng.random(shape), rng.random(shape)) * brain
    return values.astype(np.float32), tumour, brain


def test_a_planted_anomaly_scores_auroc_1_and_a_random_map_about_one_half():
    values, tumour, brain = planted(0)
    scores = map_scores(values[brain], tumour[brain], threshold=1.5)
    assert scores["auroc"] == 1.0 and scores["average_precision"] == 1.0
    assert scores["dice_WT"] == 1.0
    rng = np.random.default_rng(1)
    labels = rng.random(200_000) < 0.1
    random = map_scores(rng.random(200_000), labels, threshold=0.5)
    assert abs(random["auroc"] - 0.5) < 0.01
    assert abs(random["average_precision"] - 0.1) < 0.01
    inverted = map_scores(-values[brain], tumour[brain], threshold=0.0)
    assert inverted["auroc"] == 0.0


def test_no_tumour_gives_undefined_auroc_and_dice_by_the_empty_policy():
    values = np.linspace(0, 1, 50)
    none = np.zeros(50, bool)
    scores = map_scores(values, none, threshold=2.0)
    assert np.isnan(scores["auroc"]) and np.isnan(scores["average_precision"])
    assert scores["dice_WT"] == 1.0  # nothing above the threshold, nothing to find
    assert map_scores(values, none, threshold=0.5)["dice_WT"] == 0.0


def test_dice_curve_agrees_with_the_metrics_module():
    rng = np.random.default_rng(2)
    values, tumour = rng.random(5000), rng.random(5000) < 0.2
    thresholds = np.array([-1.0, 0.1, 0.5, 0.93, 2.0])
    expected = [dice(values > t, tumour) for t in thresholds]
    assert np.allclose(dice_curve(values, tumour, thresholds), expected)


def test_the_threshold_chosen_separates_the_planted_tumours():
    maps, tumours, brains = zip(*(planted(s) for s in range(3)), strict=True)
    threshold, best = choose_threshold(list(maps), list(tumours), list(brains))
    # candidates are quantiles: the best one lies at the gap, to within a few voxels
    assert 0.95 <= threshold <= 2.05 and best == pytest.approx(1.0, abs=0.02)
    exact = np.mean([dice((m > 1.5) & b, t) for m, t, b in zip(maps, tumours, brains,
                                                               strict=True)])
    assert exact == 1.0
    # a map whose tumour is only a little brighter: the choice is the best candidate still
    noisy = [np.where(t, m - 1.5, m) for m, t in zip(maps, tumours, strict=True)]
    _, d2 = choose_threshold(noisy, list(tumours), list(brains))
    for q in np.linspace(0.05, 0.95, 10):
        assert d2 >= np.mean([dice((m > q) & b, t) for m, t, b in
                              zip(noisy, tumours, brains, strict=True)]) - 0.02


def test_error_map_is_zero_outside_the_brain_and_marks_what_differs():
    image = np.zeros((2, 8, 8, 8), np.float32)
    recon = image.copy()
    recon[:, 4, 4, 4] = 3.0
    brain = np.zeros((8, 8, 8), bool)
    brain[1:7, 1:7, 1:7] = True
    raw = error_map(image, recon, brain, sigma=0)
    assert raw[4, 4, 4] == 9.0 and raw.sum() == 9.0
    smooth = error_map(image, recon, brain, sigma=1.0)
    assert np.argmax(smooth) == np.ravel_multi_index((4, 4, 4), smooth.shape)
    assert not smooth[~brain].any() and 0 < smooth[4, 4, 4] < 9.0


def test_reconstruct_keeps_the_volume_shape_of_any_size():
    torch.manual_seed(0)
    model = Autoencoder3d(2, 2, 2, 2)
    out = reconstruct(model, np.random.default_rng(0).random((2, 7, 9, 10)).astype(np.float32))
    assert out.shape == (2, 7, 9, 10) and out.dtype == np.float32
