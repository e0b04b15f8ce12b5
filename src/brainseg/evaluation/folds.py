"""The fold models of a cross-validation's ensemble, each with the subjects it never saw.

Kept apart from `inference` so that `brainseg predict` does not import the split's
pandas and scikit-learn.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch

from brainseg.data.split import held_out, n_folds
from brainseg.errors import BrainsegError
from brainseg.models.ensemble import Ensemble


def fold_models(model: torch.nn.Module, splits: pd.DataFrame, source: str | Path
                ) -> list[tuple[int, torch.nn.Module, list[str]]]:
    """(fold, fold model, held-out subjects) of a cross-validation's ensemble.

    Each fold's own model with the subjects it never saw: the out-of-fold predictions
    that post-processing is chosen on and cross-validation is scored by.

    Raises:
        BrainsegError: the model is not an ensemble of one model per fold of `splits`.
    """
    k = n_folds(splits)
    if not isinstance(model, Ensemble) or len(model.members) != k:
        raise BrainsegError(f"{source}: the splits have {k} folds, but the model is not an "
                            "ensemble of as many fold models (train with split.folds)")
    return [(f, member, held_out(splits, f)) for f, member in enumerate(model.members)]
