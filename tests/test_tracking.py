from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from brainseg.params import default_params
from brainseg.tracking import dvc_dir_hash, run_name, setup_experiment, tracking_uri

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
