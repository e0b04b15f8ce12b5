from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from brainseg.errors import BrainsegError
from brainseg.params import default_params
from brainseg.tracking import (
    check_tracking_store,
    dvc_dir_hash,
    run_name,
    setup_experiment,
    tracking_uri,
)

DVC = str(Path(sys.executable).parent / "dvc")


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///other.db") == "sqlite:///other.db"


def test_run_name_says_what_differs_from_the_defaults(monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    params = default_params()
    assert run_name(params, "train") == "train: defaults"
    params["train"]["optimizer"]["lr"] = 0.0005
    params["figures"]["gif"]["dpi"] = 60  # figures.dpi exists too: the key keeps `gif.`
    params["base"]["seed"] = 3
    params["train"]["experiment"] = "other"  # the same for every run of an experiment
    assert run_name(params, "train") == "train: lr=0.0005, seed=3, gif.dpi=60"
    monkeypatch.setenv("DVC_EXP_NAME", "lumpy-bush")
    assert (run_name(params, "train", fold=2)
            == "lumpy-bush train fold-2: lr=0.0005, seed=3, gif.dpi=60")


def test_run_name_is_cut_to_a_readable_length(params, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    name = run_name(params, "train")  # the smoke params differ from the defaults in 20+ keys
    assert len(name) <= 90 and name.startswith("train: epochs=1, ")
    assert name.endswith(" more") and int(name.split("+")[-1].split()[0]) > 10


def test_setup_experiment_creates_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = setup_experiment(uri, "exp")
    assert setup_experiment(uri, "exp") == first
    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert names.count("exp") == 1


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class StoreDown(BaseHTTPRequestHandler):
    """An MLflow server whose database is down: every API call answers 500."""

    def do_GET(self):
        body = b'{"error_code": "INTERNAL_ERROR", "message": "connection refused"}'
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_dead_server_or_database_is_refused_at_once_naming_it():
    url = f"http://127.0.0.1:{closed_port()}"
    with pytest.raises(BrainsegError, match=f"MLflow tracking server {url} does not answer"):
        check_tracking_store(url, timeout_s=5)
    db = f"postgresql+psycopg://lab:secret@127.0.0.1:{closed_port()}/mlflow"
    with pytest.raises(BrainsegError, match="MLflow database postgresql") as caught:
        check_tracking_store(db, timeout_s=5)
    assert "secret" not in str(caught.value) and "lab:***@" in str(caught.value)
    check_tracking_store("sqlite:///never-opened.db")  # local stores are not probed
    assert not Path("never-opened.db").exists()


def test_a_server_whose_store_fails_is_refused():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), StoreDown)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        with pytest.raises(BrainsegError, match=r"answers HTTP 500: its backend store fails "
                                                r"\(.*connection refused"):
            check_tracking_store(url, timeout_s=5)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_dvc_dir_hash_matches_dvc(tmp_path):
    """Compare with the hash DVC itself records for a directory (`dvc add`)."""
    data = tmp_path / "repo" / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("alpha\n")
    (data / "sub" / "b.bin").write_bytes(bytes(range(256)))
    repo = tmp_path / "repo"
    for cmd in (["git", "init", "-q"], [DVC, "init", "-q"], [DVC, "add", "-q", "data"]):
        subprocess.run(cmd, cwd=repo, check=True, capture_output=True)
    import yaml

    recorded = yaml.safe_load((repo / "data.dvc").read_text())["outs"][0]["md5"]
    assert dvc_dir_hash(data) == recorded
    assert json.dumps(recorded).endswith('.dir"')
