from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from brainseg.reporting.figures import pick_cases
from brainseg.reporting.plots import (
    metrics_table,
    plot_dice_box,
    plot_learning_curves,
    plot_metrics_table,
)

PNG = b"\x89PNG\r\n\x1a\n"
HISTORY = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [1.0, 0.5, 0.4],
                        "val_loss": [1.1, 0.6, 0.7], "val_dice_WT": [0.3, 0.8, 0.7],
                        "val_dice_TC": [0.2, 0.6, 0.5], "val_dice_ET": [0.1, 0.5, 0.4],
                        "val_dice_mean": [0.2, 0.63, 0.53], "slices_per_s": [50.0, 51, 52]})
PER_SUBJECT = pd.DataFrame({"subject": ["a", "b", "c"], "dice_WT": [0.9, 0.8, 0.7],
                            "dice_TC": [0.8, 0.7, 0.1], "dice_ET": [1.0, 0.0, 0.5],
                            "dice_mean": [0.9, 0.5, 0.433], "hd95_WT": [1.0, 2.0, 6.0],
                            "hd95_TC": [1.5, 3.0, 9.0], "hd95_ET": [0.0, 373.13, 4.0],
                            "iou_WT": [0.8, 0.7, 0.6]})


def test_learning_curves_add_a_learning_rate_panel_when_logged(tmp_path):
    plot_learning_curves(HISTORY, tmp_path / "two.png", dpi=50)
    plot_learning_curves(HISTORY.assign(lr=[1e-3, 5e-4, 1e-4]), tmp_path / "three.png", dpi=50)
    two, three = (Image.open(tmp_path / f"{n}.png") for n in ("two", "three"))
    assert two.format == three.format == "PNG"
    assert three.width > 1.3 * two.width  # a third panel


def test_dice_box_plot_is_a_png(tmp_path):
    plot_dice_box(PER_SUBJECT, tmp_path / "box.png", dpi=50)
    assert (tmp_path / "box.png").read_bytes()[:8] == PNG


def test_dice_box_plot_puts_lesionwise_dice_beside_whole_volume_dice(tmp_path):
    lesionwise = PER_SUBJECT.assign(lesionwise_dice_WT=[0.5, 0.9, 0.2],
                                    lesionwise_dice_TC=[0.7, 0.6, 0.0],
                                    lesionwise_dice_ET=[float("nan"), 0.0, 0.5])
    plot_dice_box(PER_SUBJECT, tmp_path / "whole.png", dpi=50)
    plot_dice_box(lesionwise, tmp_path / "both.png", dpi=50)
    whole, both = (Image.open(tmp_path / f"{n}.png") for n in ("whole", "both"))
    assert both.format == "PNG" and both.width > whole.width  # a box more per region


def test_metrics_table_has_subjects_then_mean_and_median():
    table = metrics_table(PER_SUBJECT)
    assert list(table.index) == ["a", "b", "c", "mean", "median"]
    assert list(table.columns) == ["Dice WT", "Dice TC", "Dice ET", "Dice mean", "HD95 WT",
                                   "HD95 TC", "HD95 ET"]  # iou is in the CSV, not the figure
    assert table.loc["mean", "Dice WT"] == pytest.approx(0.8)
    assert table.loc["median", "HD95 ET"] == pytest.approx(4.0)
    assert table.loc["b", "HD95 ET"] == pytest.approx(373.13)


def test_metrics_table_figure_grows_with_the_subjects(tmp_path):
    plot_metrics_table(PER_SUBJECT, tmp_path / "small.png", dpi=50)
    many = pd.concat([PER_SUBJECT.assign(subject=PER_SUBJECT["subject"] + str(i))
                      for i in range(10)], ignore_index=True)
    plot_metrics_table(many, tmp_path / "large.png", dpi=50)
    small, large = (Image.open(tmp_path / f"{n}.png") for n in ("small", "large"))
    assert large.height > 3 * small.height


def test_figures_are_deterministic(tmp_path):
    for name in ("a", "b"):
        plot_learning_curves(HISTORY, tmp_path / f"{name}.png", dpi=50)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_pick_cases_orders_by_mean_dice():
    table = pd.DataFrame({"subject": ["a", "b", "c", "d"], "dice_mean": [0.5, 0.9, 0.1, 0.7]})
    assert pick_cases(table) == {"best": "b", "median": "a", "worst": "c"}  # lower median
    assert pick_cases(table.iloc[:1]) == {"best": "a", "median": "a", "worst": "a"}
