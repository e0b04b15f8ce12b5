"""Slice stores for the training tests: a small synthetic store with a split, and the real
BraTS case through the real preprocessing."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from brainseg.data.loading import load_subject
from brainseg.data.preprocess import extract_slices, normalize_slices
from tests.conftest import REAL_CASE, REPO


def write_store(root: Path, subjects: dict[str, str], n_slices: int = 24, size: int = 32) -> Path:
    """One image.npy/label.npy per subject, tumour disks in half the slices; splits.csv."""
    for k, subject in enumerate(subjects):
        rng = np.random.default_rng(k)
        folder = root / "slices" / subject
        folder.mkdir(parents=True)
        yy, xx = np.mgrid[:size, :size]
        label = np.zeros((n_slices, size, size), np.uint8)
        for s in range(0, n_slices, 2):
            cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(3, 7)
            d2 = (yy - cy) ** 2 + (xx - cx) ** 2
            label[s][d2 < r * r] = 2
            label[s][d2 < (r - 1) ** 2] = 4
            label[s][d2 < (r - 2) ** 2] = 1
        image = rng.normal(0, 1, (n_slices, 4, size, size)) + 2.0 * (label > 0)[:, None]
        np.save(folder / "image.npy", image.astype(np.float16))
        np.save(folder / "label.npy", label)
    rows = "".join(f"{s},{split},0\n" for s, split in subjects.items())
    (root / "splits.csv").write_text("subject,split,stratum\n" + rows)
    return root


@pytest.fixture
def store(tmp_path) -> Path:
    return write_store(tmp_path, {"S-0": "train", "S-1": "train", "S-2": "train", "S-3": "val"})


@pytest.fixture
def train_params() -> dict:
    """Smoke params shrunk for in-process training tests (a few seconds an epoch)."""
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["train"].update(epochs=3, batch_size=8, slices_per_epoch=32)
    params["train"]["model"].update(base_channels=4, depth=2, dropout=0.1)
    return params


def train_paths(root: Path) -> dict[str, Path]:
    return {"slices_dir": root / "slices", "splits": root / "splits.csv",
            "model_out": root / "models" / "model.pt",
            "history_out": root / "reports" / "history.csv",
            "run_info_out": root / "models" / "run.json"}


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
