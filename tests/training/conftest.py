"""Slice stores for the training tests: the real BraTS case through the real preprocessing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.io.nifti import load_subject
from tests.conftest import REAL_CASE, REPO


def write_real_store(folder: Path, image_size: int = 64) -> Path:
    """`image.npy` / `label.npy` of the real case, as the extract and normalize stages make them."""
    subject = load_subject(REAL_CASE)
    slices, labels, brain, _ = extract_slices(subject.image, subject.seg, image_size, 4, 64)
    image, _ = normalize_slices(slices, brain, (0.5, 99.5))
    folder.mkdir(parents=True)
    np.save(folder / "image.npy", image)
    np.save(folder / "label.npy", labels)
    return folder


@pytest.fixture(scope="session")
def real_store(tmp_path_factory) -> Path:
    """The real case as a 64x64 slice store (built once per test session)."""
    return write_real_store(tmp_path_factory.mktemp("slices") / "TCGA-DU-7294")


def augment_cfg(**on: dict) -> dict:
    """The smoke `train.augment` params with every p = 0, then `on` merged in per key."""
    cfg = copy.deepcopy(yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
                        ["train"]["augment"])
    for key, value in cfg.items():
        value["p"] = 0.0
        value.update(on.get(key, {}))
    return cfg
