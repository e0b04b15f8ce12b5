"""Two smoke trainings logged over HTTP to a real `mlflow server`, compared through its
REST API only: what a user does in the MLflow UI."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.integration.conftest import BIN, run, tool_env
from tests.integration.engines import free_port

pytestmark = pytest.mark.integration
LEARNING_RATES = (0.002, 0.0005)
EPOCHS = 2
START_TIMEOUT_S = 180  # a cold start on a loaded 2-core machine takes about 45 s


def stop(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group (uvicorn workers included), SIGKILL if it lingers."""
    for sig, wait_s in ((signal.SIGTERM, 15), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, sig)
        try:
            server.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
    pytest.fail(f"mlflow server (pid {server.pid}) did not stop")


def wait_until_up(url: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n"
                        f"{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), \
                urllib.request.urlopen(f"{url}/health", timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(1)
    pytest.fail(f"mlflow server not up at {url} after {START_TIMEOUT_S} s:\n"
                f"{log.read_text()[-3000:]}")


@contextlib.contextmanager
def mlflow_server(folder: Path, backend_uri: str | None = None
                  ) -> Iterator[tuple[str, Callable[[], None]]]:
    """Start `mlflow server` on a free loopback port with served artifacts (proxied, in
    `folder/artifacts`) and the store `backend_uri` (default: SQLite in `folder`);
    yields (url, wait): call `wait()` before the first request."""
    port, log = free_port(), folder / "server.log"
    backend_uri = backend_uri or f"sqlite:///{folder / 'mlflow.db'}"
    env = tool_env() | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job consumers
    cmd = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--backend-store-uri", backend_uri,
           "--artifacts-destination", str(folder / "artifacts"), "--serve-artifacts",
           "--workers", "1"]
    with log.open("w") as out:
        server = subprocess.Popen(cmd, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, lambda: wait_until_up(url, server, log)
    finally:
        stop(server)
    with pytest.raises(OSError):  # nothing answers on the port any more
        urllib.request.urlopen(f"{url}/health", timeout=5)


def rest(url: str, endpoint: str, body: dict | None = None, **query: str) -> dict:
    """GET (or POST `body` as JSON to) /api/2.0/mlflow/<endpoint>; the decoded answer."""
    address = f"{url}/api/2.0/mlflow/{endpoint}"
    if query:
        address += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(address, data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def smoke_data(folder: Path) -> None:
    """The data stages once, on the smoke params, into `folder`."""
    shutil.copy(REPO / "tests" / "params-smoke.yaml", folder / "params.yaml")
    for stage in (["download", "--out-dir", "data/raw"],
                  ["extract", "--raw-dir", "data/raw", "--out-dir", "data/extracted"],
                  ["normalize", "--in-dir", "data/extracted", "--out-dir", "data/slices"],
                  ["split", "--manifest", "data/raw/manifest.csv", "--out", "data/splits.csv"]):
        run(["brainseg", "-q", stage[0], "--params", "params.yaml", *stage[1:]], folder)


def train(folder: Path, lr: float, url: str) -> str:
    """One smoke training with learning rate `lr`, logged to `url`; its run id."""
    params = yaml.safe_load((folder / "params.yaml").read_text())
    params["train"].update(epochs=EPOCHS)
    params["train"]["optimizer"]["lr"] = lr
    name = f"params-lr{lr}.yaml"
    (folder / name).write_text(yaml.safe_dump(params, sort_keys=False))
    out = f"runs/lr{lr}"
    run(["brainseg", "-q", "train", "--params", name, "--slices-dir", "data/slices",
         "--splits", "data/splits.csv", "--model-out", f"{out}/model.pt",
         "--history-out", f"{out}/history.csv", "--run-info-out", f"{out}/run.json",
         "--tracking-uri", url], folder)
    return json.loads((folder / out / "run.json").read_text())["run_id"]


def test_two_trainings_compared_through_the_rest_api(tmp_path):
    with mlflow_server(tmp_path) as (url, wait_until_ready):
        smoke_data(tmp_path)  # while the server starts
        wait_until_ready()
        with ThreadPoolExecutor(len(LEARNING_RATES)) as pool:  # the two runs side by side
            futures = {lr: pool.submit(train, tmp_path, lr, url) for lr in LEARNING_RATES}
        run_ids = {lr: future.result() for lr, future in futures.items()}

        experiment = rest(url, "experiments/get-by-name", experiment_name="brainseg-smoke")
        found = rest(url, "runs/search", {"experiment_ids":
                                          [experiment["experiment"]["experiment_id"]]})["runs"]
        assert {r["info"]["run_id"] for r in found} == set(run_ids.values())
        for lr, run_id in run_ids.items():
            info = next(r for r in found if r["info"]["run_id"] == run_id)
            assert info["info"]["status"] == "FINISHED"
            params = {p["key"]: p["value"] for p in info["data"]["params"]}
            assert float(params["train.optimizer.lr"]) == lr
            assert params["train.epochs"] == str(EPOCHS)
            for key in ("train_loss", "val_loss", "val_dice_WT", "val_dice_TC", "val_dice_ET"):
                history = rest(url, "metrics/get-history", run_id=run_id, metric_key=key)
                assert [m["step"] for m in history["metrics"]] == list(range(1, EPOCHS + 1))
            listed = rest(url, "artifacts/list", run_id=run_id, path="history")["files"]
            table = next(f for f in listed if f["path"] == "history/history.csv")
            csv = urllib.request.urlopen(f"{url}/get-artifact?" + urllib.parse.urlencode(
                {"path": table["path"], "run_uuid": run_id}), timeout=30).read()
            assert len(csv) == table["file_size"]
            lines = csv.decode().splitlines()
            assert lines[0].startswith("epoch,train_loss,") and len(lines) == EPOCHS + 1
        losses = {lr: [m["value"] for m in rest(url, "metrics/get-history", run_id=rid,
                                                metric_key="train_loss")["metrics"]]
                  for lr, rid in run_ids.items()}
        assert losses[LEARNING_RATES[0]] != losses[LEARNING_RATES[1]]
