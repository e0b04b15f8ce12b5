from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from brainseg.tracking import dvc_dir_hash, setup_experiment, tracking_uri

DVC = str(Path(sys.executable).parent / "dvc")


def test_tracking_uri_precedence(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking_uri() == "http://127.0.0.1:5000"
    assert tracking_uri("sqlite:///other.db") == "sqlite:///other.db"


def test_setup_experiment_creates_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = setup_experiment(uri, "exp")
    assert setup_experiment(uri, "exp") == first
    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert names.count("exp") == 1


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
