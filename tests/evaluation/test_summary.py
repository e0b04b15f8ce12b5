"""Aggregation of the per-subject table into metrics.json (means kept, full statistics added)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from brainseg.data.labels import REGIONS
from brainseg.evaluation.evaluate import ALL_METRICS, describe, summarize


def table(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(n)
    rows = []
    for i in range(n):
        row = {"subject": f"s{i}"}
        row.update({f"{m}_{r}": float(rng.random()) for m in ALL_METRICS for r in REGIONS})
        row["dice_mean"] = float(np.mean([row[f"dice_{r}"] for r in REGIONS]))
        rows.append(row)
    return pd.DataFrame(rows)


def test_describe_hand_computed():
    stats = describe(pd.Series([1.0, 2.0, 3.0, 4.0, 10.0]))
    assert stats["mean"] == pytest.approx(4.0)
    assert stats["std"] == pytest.approx(np.sqrt((9 + 4 + 1 + 0 + 36) / 4))  # n - 1
    assert (stats["q1"], stats["median"], stats["q3"]) == (2.0, 3.0, 4.0)
    one = describe(pd.Series([0.7]))
    assert one == {"mean": 0.7, "std": None, "median": 0.7, "q1": 0.7, "q3": 0.7}


def test_summary_keeps_the_mean_keys_and_adds_statistics():
    per_subject = table(5)
    summary = summarize(per_subject)
    assert set(summary) == {"test", "test_stats"}
    test, stats = summary["test"], summary["test_stats"]
    assert test["n_subjects"] == 5
    assert set(test) == {"n_subjects", *ALL_METRICS} and set(stats) == set(ALL_METRICS)
    assert set(test["dice"]) == {"WT", "TC", "ET", "mean"}
    assert set(test["hd95"]) == set(REGIONS)
    for metric in ALL_METRICS:
        for region in REGIONS:
            column = per_subject[f"{metric}_{region}"]
            assert test[metric][region] == pytest.approx(column.mean())
            assert stats[metric][region]["std"] == pytest.approx(column.std())  # pandas: n - 1
            assert stats[metric][region]["median"] == pytest.approx(column.median())
            assert stats[metric][region]["q1"] == pytest.approx(column.quantile(0.25))
            assert stats[metric][region]["q3"] == pytest.approx(column.quantile(0.75))
    assert test["dice"]["mean"] == pytest.approx(per_subject["dice_mean"].mean())
    assert stats["dice"]["mean"]["median"] == pytest.approx(per_subject["dice_mean"].median())
    json.dumps(summary, allow_nan=False)  # strict JSON


def test_summary_of_one_subject_is_strict_json():
    summary = summarize(table(1))
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["test_stats"]["hd95"]["ET"]["std"] is None


def test_undefined_lesionwise_values_are_left_out_of_the_means():
    per_subject = table(4)
    per_subject.loc[[0, 1], "lesionwise_dice_ET"] = np.nan  # no ET lesion in either mask
    summary = summarize(per_subject)
    assert summary["test"]["lesionwise_dice"]["ET"] == pytest.approx(
        per_subject["lesionwise_dice_ET"].iloc[2:].mean())
    assert summary["test"]["dice"]["mean"] == pytest.approx(per_subject["dice_mean"].mean())
    json.dumps(summary, allow_nan=False)
