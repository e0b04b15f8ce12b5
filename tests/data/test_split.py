from __future__ import annotations

import pandas as pd
import pytest

from brainseg.data.split import (
    cross_validation_split,
    fold_view,
    n_folds,
    read_splits,
    split_subjects,
    volume_strata,
)
from brainseg.errors import BrainsegError


def manifest(n: int) -> pd.DataFrame:
    return pd.DataFrame({"subject": [f"S-{i:03d}" for i in range(n)],
                         "wt_cm3": [10.0 + 7 * ((i * 37) % n) for i in range(n)]})


def test_split_is_by_subject_seeded_and_sized():
    a = split_subjects(manifest(30), 0.15, 0.2, 3, seed=1)
    b = split_subjects(manifest(30), 0.15, 0.2, 3, seed=1)
    c = split_subjects(manifest(30), 0.15, 0.2, 3, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["split"].equals(c["split"])
    assert a["subject"].is_unique and len(a) == 30
    assert a["split"].value_counts().to_dict() == {"train": 20, "test": 6, "val": 4}


def test_split_is_stratified_by_volume():
    table = split_subjects(manifest(30), 0.15, 0.3, 3, seed=0)
    test = table[table["split"] == "test"]
    assert sorted(test["stratum"].value_counts().tolist()) == [3, 3, 3]


def test_strata_shrink_until_every_bin_is_populated():
    assert volume_strata(pd.Series([1.0, 2, 3, 4]).to_numpy(), 3, min_count=2).max() == 1


def test_too_few_subjects_is_an_error():
    with pytest.raises(BrainsegError, match="cannot give"):
        split_subjects(manifest(2), 0.3, 0.3, 1, seed=0)


def test_cross_validation_folds_cover_every_non_test_subject_once():
    table = cross_validation_split(manifest(20), 5, 0.0, 3, seed=42)
    assert (table["split"] == "train").all()
    assert sorted(table["fold"].value_counts().tolist()) == [4, 4, 4, 4, 4]
    again = cross_validation_split(manifest(20), 5, 0.0, 3, seed=42)
    pd.testing.assert_frame_equal(table, again)
    # stratified: each fold draws from every volume bin
    assert table.groupby("fold")["stratum"].nunique().min() >= 2


def test_cross_validation_keeps_a_test_set_apart():
    table = cross_validation_split(manifest(30), 3, 0.2, 3, seed=0)
    test = table[table["split"] == "test"]
    assert len(test) == 6 and (test["fold"] == -1).all()
    assert sorted(table.loc[table["fold"] >= 0, "fold"].value_counts().tolist()) == [8, 8, 8]


def test_fold_view_gives_the_classic_split_of_one_fold(tmp_path):
    table = cross_validation_split(manifest(20), 5, 0.0, 3, seed=42)
    path = tmp_path / "splits.csv"
    table.to_csv(path, index=False)
    assert n_folds(read_splits(path)) == 5
    view = read_splits(path, fold=2)
    assert set(view.loc[view["split"] == "val", "subject"]) == set(
        table.loc[table["fold"] == 2, "subject"])
    assert (view["split"] == "train").sum() == 16
    with pytest.raises(BrainsegError, match="fold 5: the splits have 5 folds"):
        read_splits(path, fold=5)


def test_a_fold_of_a_split_without_folds_is_an_error():
    with pytest.raises(BrainsegError, match="no folds"):
        fold_view(split_subjects(manifest(30), 0.15, 0.2, 3, seed=1), 0)
