"""Shared fixtures: tiny NIfTI subjects written in tmp_path, and the real BraTS case."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from brainseg.data.modalities import MODALITIES

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 31], [0, 0, 1.0, 0], [0, 0, 0, 1]])


def write_subject(root: Path, subject: str, shape=(32, 32, 12), seed: int = 0,
                  affine: np.ndarray = AFFINE) -> Path:
    """A small subject in BraTS 2020 layout: a brain ellipsoid with a labelled tumour."""
    rng = np.random.default_rng(seed)
    folder = root / subject
    folder.mkdir(parents=True)
    x, y, z = np.indices(shape)
    c = np.array(shape) / 2
    brain = ((x - c[0]) / (shape[0] * 0.4)) ** 2 + ((y - c[1]) / (shape[1] * 0.4)) ** 2 + (
        (z - c[2]) / (shape[2] * 0.45)) ** 2 < 1
    tumour = ((x - c[0] - 3) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) < 16
    core = ((x - c[0] - 3) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) < 6
    seg = np.zeros(shape, np.uint8)
    seg[tumour & brain] = 2
    seg[core & brain] = 1
    seg[(((x - c[0] - 3) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2) == 5) & brain] = 4
    for i, mod in enumerate(MODALITIES):
        data = np.where(brain, 100 + 20 * i + rng.normal(0, 5, shape) + 80 * tumour, 0)
        nib.save(nib.Nifti1Image(data.astype(np.int16), affine), folder / f"{subject}_{mod}.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), folder / f"{subject}_seg.nii.gz")
    return folder


@pytest.fixture
def tiny_cohort(tmp_path: Path) -> Path:
    """Five tiny subjects in BraTS 2020 layout under tmp_path/src."""
    root = tmp_path / "src"
    for i in range(5):
        write_subject(root, f"TINY-{i:03d}", seed=i)
    return root


@pytest.fixture
def params() -> dict:
    """The smoke params (a complete, valid params file)."""
    return yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())


REAL_CASE = REPO / "tests" / "data" / "real" / "TCGA-DU-7294"


@pytest.fixture
def real_case() -> Path:
    """The real BraTS 2020-layout case kept in tests/data/real (see its README)."""
    assert (REAL_CASE / "TCGA-DU-7294_t1.nii.gz").is_file(), f"{REAL_CASE} is missing"
    return REAL_CASE


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:  # keep the test output clean
        pass


@pytest.fixture
def served(tmp_path):
    """A folder served over HTTP on 127.0.0.1 (a real server in a thread): (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
