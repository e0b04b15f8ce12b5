"""Figure titles say how the subjects were scored: test split or out-of-fold."""

import pandas as pd
import pytest

from brainseg.reporting.figures import case_title
from brainseg.reporting.plots import scored_as


@pytest.mark.parametrize(("folds", "expected"), [
    (None, "Test"),
    ([-1, -1], "Test"),
    ([0, 1], "Out-of-fold"),
    ([0, -1], "Out-of-fold and test"),
])
def test_scored_as_reads_the_fold_column(folds, expected):
    table = pd.DataFrame({"subject": ["a", "b"]})
    if folds is not None:
        table["fold"] = folds
    assert scored_as(table) == expected


def test_case_title_names_the_fold_of_an_out_of_fold_subject():
    row = pd.Series({"dice_WT": 0.9, "dice_TC": 0.8, "dice_ET": float("nan"), "fold": 3},
                    name="BraTS-1")
    assert case_title("best", row) == ("best: BraTS-1 (fold 3, out-of-fold)  "
                                       "Dice WT 0.900  TC 0.800  ET n/a")
    plain = row.drop("fold")
    assert case_title("worst", plain) == "worst: BraTS-1  Dice WT 0.900  TC 0.800  ET n/a"
