"""Stage `split`: subject-level train/val/test split, stratified by tumor volume, seeded.

Slices of one patient are near-duplicates, so the split is by subject, never by slice.
Writes a CSV with columns subject, split (train|val|test), wt_cm3, stratum.

With `split.folds: k` (k >= 2) the subjects that are not held out for testing are
assigned to k cross-validation folds (stratified by the same volume bins) instead of a
validation share: `split` is then `train` or `test`, and a column `fold` (0..k-1; -1 for
test subjects) tells which fold each training subject validates. `read_splits(path,
fold=f)` gives the classic train/val/test view of fold f, which every stage reads.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

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


def assign_folds(subjects: np.ndarray, strata: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each subject: k folds stratified by `strata`, seeded.

    Falls back to a plain shuffled k-fold when a stratum holds fewer than k subjects.
    """
    if len(subjects) < k:
        raise BrainsegError(f"split.folds: {k} folds need at least {k} subjects, got "
                            f"{len(subjects)}")
    folds = np.full(len(subjects), -1, dtype=int)
    if np.bincount(strata).min() >= k:
        parts = StratifiedKFold(k, shuffle=True, random_state=seed).split(subjects, strata)
    else:
        parts = KFold(k, shuffle=True, random_state=seed).split(subjects)
    for fold, (_, held) in enumerate(parts):
        folds[held] = fold
    return folds


def cross_validation_split(table: pd.DataFrame, folds: int, test_fraction: float,
                           n_strata: int, seed: int) -> pd.DataFrame:
    """Assign each subject to a cross-validation fold, or to the test set apart.

    Args:
        table: manifest with columns `subject` and `wt_cm3`.
        folds: number of folds k (>= 2).
        test_fraction: share of subjects held out for testing (0: none).
        n_strata: tumor-volume quantile bins to stratify on (test cut and folds).
        seed: random state for scikit-learn.

    Returns:
        DataFrame (subject, split: train|test, fold: 0..k-1 or -1, wt_cm3, stratum).
    """
    table = table.sort_values("subject").reset_index(drop=True)
    subjects = table["subject"].to_numpy()
    strata = volume_strata(table["wt_cm3"].to_numpy(), n_strata, min_count=folds)
    n_test = round(len(table) * test_fraction) if test_fraction > 0 else 0
    test: set[str] = set()
    if n_test:
        _, held, _, _ = _cut(subjects, strata, max(1, n_test), seed)
        test = set(held)
    is_cv = np.array([s not in test for s in subjects])
    fold = np.full(len(subjects), -1, dtype=int)
    fold[is_cv] = assign_folds(subjects[is_cv], strata[is_cv], folds, seed)
    return pd.DataFrame({
        "subject": subjects,
        "split": np.where(is_cv, "train", "test"),
        "fold": fold,
        "wt_cm3": table["wt_cm3"].to_numpy(),
        "stratum": strata,
    })


def n_folds(splits: pd.DataFrame) -> int:
    """Number of cross-validation folds of a splits table (0: a single train/val split)."""
    if "fold" not in splits:
        return 0
    return int(splits["fold"].max()) + 1


def fold_view(splits: pd.DataFrame, fold: int) -> pd.DataFrame:
    """The train/val/test view of cross-validation fold `fold`: its subjects become `val`."""
    k = n_folds(splits)
    if not 0 <= fold < k:
        raise BrainsegError(f"fold {fold}: the splits have {k} folds (0..{k - 1})"
                            if k else f"fold {fold}: the splits have no folds (split.folds: 0)")
    view = splits.copy()
    view.loc[(splits["split"] == "train") & (splits["fold"] == fold), "split"] = "val"
    return view


def held_out(splits: pd.DataFrame, fold: int) -> list[str]:
    """The subjects that cross-validation fold `fold` validates on (sorted)."""
    return sorted(splits.loc[(splits["split"] == "train") & (splits["fold"] == fold), "subject"])


def read_splits(path: str | Path, fold: int | None = None) -> pd.DataFrame:
    """Read data/splits.csv; with `fold`, the train/val/test view of that fold."""
    path = Path(path)
    if not path.is_file():
        raise BrainsegError(f"{path}: splits not found (run `brainseg split` first)")
    splits = pd.read_csv(path)
    return splits if fold is None else fold_view(splits, fold)


def subjects_in_split(splits_path: str | Path, split: str, fold: int | None = None
                      ) -> list[str]:
    """The sorted ids of the subjects that data/splits.csv assigns to `split`.

    With `fold`, in the train/val/test view of that cross-validation fold (`fold_view`).

    Raises:
        BrainsegError: the file is missing, or holds no subject in `split`.
    """
    splits = read_splits(splits_path, fold)
    subjects = sorted(splits.loc[splits["split"] == split, "subject"])
    if not subjects:
        raise BrainsegError(f"{splits_path}: no subject in the '{split}' split")
    return subjects


def run_split(*, params: dict[str, Any], manifest: str | Path, out: str | Path) -> pd.DataFrame:
    """Split the subjects of `manifest` and write the CSV `out` atomically."""
    cfg, seed = params["split"], params["base"]["seed"]
    table = read_manifest(manifest)
    if cfg["folds"] >= 2:
        splits = cross_validation_split(table, cfg["folds"], cfg["test_fraction"],
                                        cfg["n_strata"], seed)
    else:
        splits = split_subjects(table, cfg["val_fraction"], cfg["test_fraction"],
                                cfg["n_strata"], seed)
    with atomic_file(out) as tmp:
        splits.to_csv(tmp, index=False, lineterminator="\n")
    log.info("split: %s", splits["split"].value_counts().to_dict())
    return splits


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, type=Path, help="data/raw/manifest.csv")
    parser.add_argument("--out", required=True, type=Path, help="output CSV (data/splits.csv)")


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_split(params=params, manifest=args.manifest, out=args.out)
