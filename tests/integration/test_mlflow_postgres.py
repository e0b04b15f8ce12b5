"""A lab's MLflow server: `mlflow server` on a real PostgreSQL database with a proxied
artifact store. Two smoke trainings and a cross-validation log to it over HTTP; the runs,
the model registry and the fold runs are read back through the REST API, and the rows are
in PostgreSQL. A server or a database that is down stops `brainseg train` at once."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import run, tool_env
from tests.integration.engines import free_port, postgres
from tests.integration.test_mlflow_server import (
    LEARNING_RATES,
    mlflow_server,
    rest,
    smoke_data,
    train,
)

pytestmark = pytest.mark.integration
MODEL = "brainseg-smoke-unet"  # train.registered_model of the smoke params


def train_cv(folder: Path, url: str) -> dict:
    """A 2-fold cross-validation of one epoch per fold, logged to `url`; its run info."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["split"].update(folds=2, fold_ids=[0, 1])
    params["train"].update(epochs=1, checkpoint="last")
    (folder / "params-cv.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["brainseg", "-q", "split", "--params", "params-cv.yaml", "--manifest",
         "data/raw/manifest.csv", "--out", "data/splits-cv.csv"], folder)
    run(["brainseg", "-q", "train", "--params", "params-cv.yaml", "--slices-dir", "data/slices",
         "--splits", "data/splits-cv.csv", "--folds-dir", "runs/cv/folds",
         "--model-out", "runs/cv/model.pt", "--history-out", "runs/cv/history.csv",
         "--run-info-out", "runs/cv/run.json", "--tracking-uri", url], folder)
    return json.loads((folder / "runs/cv/run.json").read_text())


def train_fails(folder: Path, uri: str, out: str) -> str:
    """`brainseg train` to `uri`, which must fail; its output (and no output file)."""
    result = subprocess.run(
        ["brainseg", "train", "--params", "params.yaml", "--slices-dir", "data/slices",
         "--splits", "data/splits.csv", "--model-out", f"{out}/model.pt", "--history-out",
         f"{out}/history.csv", "--run-info-out", f"{out}/run.json", "--tracking-uri", uri],
        cwd=folder, env=tool_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout + result.stderr
    assert not (folder / out).exists(), f"{out} written by a failed training"
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return errors[0]


def sql(pg, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", dbname=pg.db) as conn:
        return conn.execute(query).fetchall()


def test_lab_server_on_postgresql(tmp_path):
    with postgres() as pg, mlflow_server(tmp_path, pg.uri) as (url, wait_until_ready):
        smoke_data(tmp_path)  # while the server starts
        wait_until_ready()
        with ThreadPoolExecutor(len(LEARNING_RATES)) as pool:
            futures = {lr: pool.submit(train, tmp_path, lr, url) for lr in LEARNING_RATES}
        run_ids = {lr: future.result() for lr, future in futures.items()}

        experiment = rest(url, "experiments/get-by-name", experiment_name="brainseg-smoke")
        exp_id = experiment["experiment"]["experiment_id"]
        found = rest(url, "runs/search", {"experiment_ids": [exp_id]})["runs"]
        assert {r["info"]["run_id"] for r in found} == set(run_ids.values())
        assert {r["info"]["status"] for r in found} == {"FINISHED"}
        for lr, run_id in run_ids.items():
            info = next(r for r in found if r["info"]["run_id"] == run_id)
            params = {p["key"]: p["value"] for p in info["data"]["params"]}
            assert float(params["train.optimizer.lr"]) == lr
            listed = rest(url, "artifacts/list", run_id=run_id, path="checkpoint")["files"]
            assert [f["path"] for f in listed] == ["checkpoint/model.pt"]
        # The rows are PostgreSQL's; the artifacts lie in the server's proxied store.
        in_db = {row[0] for row in sql(pg, "SELECT run_uuid FROM runs")}
        assert in_db == set(run_ids.values())
        assert any((tmp_path / "artifacts").rglob("model.pt"))

        # The model registry: each training registered one version; an alias reads back.
        versions = {json.loads((tmp_path / f"runs/lr{lr}/run.json").read_text())
                    ["model_version"]: run_ids[lr] for lr in LEARNING_RATES}
        assert sorted(versions) == ["1", "2"]
        for version, run_id in versions.items():
            got = rest(url, "model-versions/get", name=MODEL, version=version)
            assert got["model_version"]["run_id"] == run_id
        rest(url, "registered-models/alias", {"name": MODEL, "alias": "champion",
                                              "version": "2"})
        champion = rest(url, "registered-models/alias", name=MODEL, alias="champion")
        assert champion["model_version"]["run_id"] == versions["2"]
        assert sql(pg, "SELECT version FROM registered_model_aliases") == [(2,)]

        # A cross-validation: one parent run, its folds as child runs.
        cv = train_cv(tmp_path, url)
        children = rest(url, "runs/search", {
            "experiment_ids": [exp_id],
            "filter": f"tags.mlflow.parentRunId = '{cv['run_id']}'"})["runs"]
        folds = sorted(next(t["value"] for t in r["data"]["tags"] if t["key"] == "fold")
                       for r in children)
        assert folds == ["0", "1"]
        assert cv["model_version"] == "5"  # after the two folds' own versions, 3 and 4

        # The database goes down behind the running server: one message, nothing written.
        subprocess.run(["runuser", "-u", "postgres", "--", str(pg.bin / "pg_ctl"), "-D",
                        str(pg.folder / "data"), "-m", "fast", "-w", "stop"], check=True,
                       capture_output=True, timeout=120)
        message = train_fails(tmp_path, url, "runs/db-down")
        assert "answers HTTP 5" in message and url in message

    # The server and its database are gone: both refused at once, naming the store.
    message = train_fails(tmp_path, url, "runs/server-down")
    assert f"MLflow tracking server {url} does not answer" in message
    dead_db = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/mlflow"
    message = train_fails(tmp_path, dead_db, "runs/db-gone")
    assert f"MLflow database {dead_db} is not reachable" in message
