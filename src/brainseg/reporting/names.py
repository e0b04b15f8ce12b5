"""File names of the figures stage's outputs.

Kept apart from `figures.py` (which imports matplotlib, torch and albumentations) because
the Snakefile reads them at parse time: a dry run must not pay for those imports.
"""

from __future__ import annotations

CASES = ("best", "median", "worst")
FIGURES = ("learning_curves.png", "dice_boxplot.png", "per_subject_table.png",
           *(f"overlay_{case}.png" for case in CASES), "overlay_median.gif", "augmentation.png")
