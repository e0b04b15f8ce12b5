from __future__ import annotations

import pandas as pd
import pytest

from brainseg.data.split import split_subjects, volume_strata
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
