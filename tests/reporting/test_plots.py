from __future__ import annotations

import numpy as np
import pandas as pd

from brainseg.reporting.figures import pick_cases
from brainseg.reporting.plots import plot_dice_box, plot_learning_curves, plot_overlay

PNG = b"\x89PNG\r\n\x1a\n"


def test_learning_curves_and_box_plot_are_pngs(tmp_path):
    history = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                            "val_dice_WT": [0.3, 0.8], "val_dice_TC": [0.2, 0.6],
                            "val_dice_ET": [0.1, 0.5], "val_dice_mean": [0.2, 0.63]})
    plot_learning_curves(history, tmp_path / "curves.png", dpi=50)
    per_subject = pd.DataFrame({"subject": ["a", "b", "c"], "dice_WT": [0.9, 0.8, 0.7],
                                "dice_TC": [0.8, 0.7, 0.1], "dice_ET": [1.0, 0.0, 0.5]})
    plot_dice_box(per_subject, tmp_path / "box.png", dpi=50)
    for name in ("curves.png", "box.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG


def test_overlay_draws_even_without_tumour(tmp_path):
    flair = np.zeros((20, 20, 10), np.float32)
    flair[4:16, 4:16, 2:8] = 100
    ref = np.zeros((20, 20, 10), np.uint8)
    ref[8:12, 8:12, 4:6] = 2
    plot_overlay(flair, ref, np.zeros_like(ref), "t", tmp_path / "o.png", dpi=50)
    plot_overlay(flair, np.zeros_like(ref), np.zeros_like(ref), "t", tmp_path / "e.png", dpi=50)
    assert (tmp_path / "o.png").read_bytes()[:8] == PNG == (tmp_path / "e.png").read_bytes()[:8]


def test_pick_cases_orders_by_mean_dice():
    table = pd.DataFrame({"subject": ["a", "b", "c", "d"], "dice_mean": [0.5, 0.9, 0.1, 0.7]})
    assert pick_cases(table) == {"best": "b", "median": "a", "worst": "c"}  # lower median
