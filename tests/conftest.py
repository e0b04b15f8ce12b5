"""Shared fixtures: tiny NIfTI subjects written in tmp_path, and the real BraTS case."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import yaml

from brainseg.data.modalities import MODALITIES

REPO = Path(__file__).resolve().parents[1]
AFFINE = np.array([[-1.0, 0, 0, 0], [0, -1.0, 0, 31], [0, 0, 1.0, 0], [0, 0, 0, 1]])


# The whole-pipeline runs that tests share (tests/integration/conftest.py: session fixtures)
# and the modules whose tests use them, checked at collection.
SHARED_RUNS = frozenset({"snakemake_repo", "dvc_repo"})
SHARED_RUN_MODULES = frozenset(f"tests/integration/test_{name}.py" for name in (
    "bench_pipeline", "concurrency", "dvc_remote", "pipeline", "reports", "slurm"))
SHARED_GROUP = "shared-runs"


def module_path(nodeid: str) -> str:
    """tests/.../test_x.py of a test's node ID (relative to the repository)."""
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The longest tests first: those of the shared runs, then the integration modules;
    the order within a module kept. Under pytest-xdist (`make test`) each worker's queue
    then starts with the long modules, and no long module starts last.

    Raises:
        pytest.UsageError: a module uses a shared run and is not in SHARED_RUN_MODULES
            (the xdist scheduler below relies on the list).
    """
    unlisted = {module_path(item.nodeid) for item in items
                if SHARED_RUNS & set(getattr(item, "fixturenames", ()))} - SHARED_RUN_MODULES
    if unlisted:
        raise pytest.UsageError(
            f"tests/conftest.py: add {sorted(unlisted)} to SHARED_RUN_MODULES (the modules "
            f"that use {sorted(SHARED_RUNS)})")
    items.sort(key=lambda item: 0 if module_path(item.nodeid) in SHARED_RUN_MODULES
               else 1 if item.get_closest_marker("integration") else 2)


@pytest.hookimpl(tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile` with one change: the modules of SHARED_RUN_MODULES are one unit.

    Each module runs whole on one worker (its module fixtures are built once), and the
    modules that share the session's pipeline runs all run on the same worker: those runs
    are made once, and no other worker reads them while a test there changes them.
    Other distribution modes are xdist's own.
    """
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedRunsOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = module_path(nodeid)
            return SHARED_GROUP if path in SHARED_RUN_MODULES else path

    return SharedRunsOnOneWorker(config, log)


@pytest.fixture(autouse=True)
def _mlflow_uri_not_leaked():
    """`mlflow.set_tracking_uri` also sets $MLFLOW_TRACKING_URI for child processes: put the
    variable back after every test, so that a later test's subprocess does not inherit an
    earlier test's (deleted) store."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def wait_for(condition, seconds: float, what: str) -> None:
    """Poll `condition()` until it holds; fail the test naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds} s")
        time.sleep(0.1)


def digest(path: Path) -> str:
    """The SHA-256 of a file: compare files by it (pytest's diff of two large byte strings
    that differ can take hours). Of a folder: of its files' names and digests (Snakemake's
    `.snakemake_timestamp` left out)."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*")
                       if p.is_file() and p.name != ".snakemake_timestamp")
        listing = "".join(f"{p.relative_to(path).as_posix()} {digest(p)}\n" for p in files)
        return hashlib.sha256(listing.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


@dataclass
class ServerState:
    """What the handler serves and how it misbehaves; `requests` records (path, Range)."""

    files: dict[str, bytes] = field(default_factory=dict)
    mode: str = "normal"
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


class RangeHandler(BaseHTTPRequestHandler):
    """Serves `state.files`; modes: normal, hang, 500-always, 500-once, 404, ignore-range,
    cut (the first response stops half-way)."""

    state: ServerState

    def log_message(self, format, *args):  # silence the default stderr log
        pass

    def do_GET(self):
        state = self.state
        with state.lock:
            state.requests.append((self.path, self.headers.get("Range")))
            count = len(state.requests)
        if state.mode == "hang":
            state.release.wait(10)
            return
        if state.mode == "500-always" or (state.mode == "500-once" and count == 1):
            self.send_error(500)
            return
        body = state.files.get(self.path)
        if state.mode == "404" or body is None:
            self.send_error(404)
            return
        self._send(body, count)

    def _send(self, body: bytes, count: int):
        start = 0
        header = self.headers.get("Range")
        if header and self.state.mode != "ignore-range":
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.state.mode == "cut" and count == 1:
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def server(monkeypatch):
    """A threading HTTP server on 127.0.0.1 (no proxy in between); yields (base URL, state).

    It serves `state.files` (URL path -> bytes) with range requests, and misbehaves as
    `state.mode` says (see `RangeHandler`).
    """
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    state = ServerState()
    handler = type("BoundHandler", (RangeHandler,), {"state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        state.release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
