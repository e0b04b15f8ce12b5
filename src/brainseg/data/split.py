"""Stage `split`: subject-level train/val/test split, stratified by tumor volume, seeded.

Slices of one patient are near-duplicates, so the split is by subject, never by slice.
Writes a CSV with columns subject, split (train|val|test), wt_cm3, stratum.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from brainseg.data.manifest import read_manifest
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_file

log = logging.getLogger(__name__)


def volume_strata(volumes: np.ndarray, n_strata: int, min_count: int) -> np.ndarray:
    """Quantile bins of `volumes`, with fewer bins until each holds `min_count` subjects."""
    for n in range(min(n_strata, len(volumes)), 0, -1):
        edges = np.quantile(volumes, np.linspace(0, 1, n + 1)[1:-1])
        strata = np.searchsorted(edges, volumes, side="right")
        if np.bincount(strata).min() >= min_count:
            return strata
    return np.zeros(len(volumes), dtype=int)


def _cut(subjects, strata, size: int, seed: int):
    try:
        return train_test_split(subjects, strata, test_size=size, random_state=seed,
                                stratify=strata)
    except ValueError:  # a stratum too small for this cut: fall back to a plain shuffle
        return train_test_split(subjects, strata, test_size=size, random_state=seed)


def split_subjects(
    table: pd.DataFrame, val_fraction: float, test_fraction: float, n_strata: int, seed: int
) -> pd.DataFrame:
    """Assign each subject of a manifest to train, val or test.

    Args:
        table: manifest with columns `subject` and `wt_cm3`.
        val_fraction, test_fraction: shares of subjects (each rounded, at least 1).
        n_strata: number of tumor-volume quantile bins to stratify on.
        seed: random state for scikit-learn.

    Returns:
        DataFrame (subject, split, wt_cm3, stratum) sorted by subject.
    """
    n = len(table)
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    if n - n_test - n_val < 1:
        raise BrainsegError(
            f"split: {n} subjects cannot give test={n_test}, val={n_val} and a training set"
        )
    table = table.sort_values("subject").reset_index(drop=True)
    strata = volume_strata(table["wt_cm3"].to_numpy(), n_strata, min_count=3)
    subjects = table["subject"].to_numpy()
    rest, test, rest_strata, _ = _cut(subjects, strata, n_test, seed)
    train, val, _, _ = _cut(rest, rest_strata, n_val, seed)
    which = {**dict.fromkeys(train, "train"), **dict.fromkeys(val, "val"),
             **dict.fromkeys(test, "test")}
    return pd.DataFrame({
        "subject": subjects,
        "split": [which[s] for s in subjects],
        "wt_cm3": table["wt_cm3"].to_numpy(),
        "stratum": strata,
    })


def read_splits(path: str | Path) -> pd.DataFrame:
    """Read data/splits.csv."""
    path = Path(path)
    if not path.is_file():
        raise BrainsegError(f"{path}: splits not found (run `brainseg split` first)")
    return pd.read_csv(path)


def subjects_in_split(splits_path: str | Path, split: str) -> list[str]:
    """The sorted ids of the subjects that data/splits.csv assigns to `split`.

    Raises:
        BrainsegError: the file is missing, or holds no subject in `split`.
    """
    splits = read_splits(splits_path)
    subjects = sorted(splits.loc[splits["split"] == split, "subject"])
    if not subjects:
        raise BrainsegError(f"{splits_path}: no subject in the '{split}' split")
    return subjects


def run_split(*, params: dict[str, Any], manifest: str | Path, out: str | Path) -> pd.DataFrame:
    """Split the subjects of `manifest` and write the CSV `out` atomically."""
    cfg = params["split"]
    splits = split_subjects(read_manifest(manifest), cfg["val_fraction"], cfg["test_fraction"],
                            cfg["n_strata"], params["base"]["seed"])
    with atomic_file(out) as tmp:
        splits.to_csv(tmp, index=False, lineterminator="\n")
    log.info("split: %s", splits["split"].value_counts().to_dict())
    return splits


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="data/raw/manifest.csv")
    parser.add_argument("--out", required=True, type=Path, help="output CSV (data/splits.csv)")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_split(params=params, manifest=args.manifest, out=args.out)
