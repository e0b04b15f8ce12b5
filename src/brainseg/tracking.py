"""MLflow: tracking URI, experiment creation, and the tags that tie a run to code and data.

The default store is `sqlite:///mlflow.db` in the directory the runner works in (the
repository root); the `MLFLOW_TRACKING_URI` environment variable or `--tracking-uri`
overrides it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock

from brainseg.errors import BrainsegError
from brainseg.io.atomic import write_text
from brainseg.io.hashing import file_digests
from brainseg.params import changed_params, flatten

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PROBE_TIMEOUT_S = 15
# Database stores that a client may reach over the network (a file store needs no probe).
_DB_SCHEMES = ("postgresql", "mysql", "mssql")


def tracking_uri(cli_value: str | None = None) -> str:
    """`--tracking-uri` if given, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db."""
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _short_key(key: str, keys: Iterable[str]) -> str:
    """The shortest dotted suffix of `key` that no other key of `keys` ends with."""
    parts = key.split(".")
    others = [k for k in keys if k != key]
    for n in range(1, len(parts) + 1):
        suffix = ".".join(parts[-n:])
        if not any(k == suffix or k.endswith("." + suffix) for k in others):
            return suffix
    return key


def _short_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ",".join(_short_value(v) for v in value) + "]"
    return str(value)


def params_changes(params: Mapping[str, Any], stage: str) -> list[str]:
    """`key=value` for every param that differs from its schema default.

    The stage's own section comes first; each key is shortened to the shortest dotted
    suffix that is unique among all params (`lr`, `gif.dpi`, `affine.p`).
    """
    changed = changed_params(params)
    every = list(flatten(params))
    keys = sorted(changed, key=lambda k: k.split(".")[0] != stage)  # stable: file order
    return [f"{_short_key(k, every)}={_short_value(changed[k])}" for k in keys]


# The same for every run of one MLflow experiment: no help in telling its runs apart.
_UNNAMED = ("experiment=", "registered_model=")


def run_name(params: Mapping[str, Any], stage: str, fold: int | None = None,
             max_chars: int = 90) -> str:
    """A run name that says what distinguishes the run, e.g. `exp-1a2b3 train fold-2: lr=0.0005`.

    Made of the DVC experiment name (`$DVC_EXP_NAME`, set by `dvc exp run`), the stage,
    the fold, and the params that differ from the schema defaults (`: defaults` when none
    does), cut to `max_chars` with `+N more`. MLflow's own random names cannot tell runs
    apart: they come from Python's `random`, which a training has just seeded.

    Args:
        params: the validated params.
        stage: the stage that opens the run (`train`).
        fold: the cross-validation fold, or None.
        max_chars: longest name; the whole list of changes is in the `params_changed` tag.
    """
    head = " ".join(filter(None, [os.environ.get("DVC_EXP_NAME"), stage,
                                  None if fold is None else f"fold-{fold}"]))
    changes = [c for c in params_changes(params, stage) if not c.startswith(_UNNAMED)]
    if not changes:
        return f"{head}: defaults"
    for n in range(len(changes), 0, -1):
        more = f" +{len(changes) - n} more" if n < len(changes) else ""
        name = f"{head}: {', '.join(changes[:n])}{more}"
        if len(name) <= max_chars or n == 1:
            return name
    raise AssertionError("unreachable")


def add_tracking_argument(parser: argparse.ArgumentParser) -> None:
    """The `--tracking-uri` option shared by every command that logs to MLflow."""
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                        "else sqlite:///mlflow.db in the working directory)")


def log_to_run(uri: str, run_info: Path, artifact_path: str, files: Iterable[Path] = (),
               metrics: dict[str, float] | None = None) -> None:
    """Add metrics and files to the training's MLflow run (its id read from `run_info`).

    Raises:
        BrainsegError: a remote store (server or database) does not answer.
    """
    import mlflow

    check_tracking_store(uri)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(run_id=read_run_info(run_info)["run_id"]):
        if metrics:
            mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def _lock_path(uri: str) -> Path:
    if uri.startswith("sqlite:///"):
        return Path(uri.removeprefix("sqlite:///") + ".lock")
    return Path(".mlflow-setup.lock")


def _redacted(uri: str) -> str:
    """`uri` without the password of its user, for messages."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _probe_server(uri: str, timeout_s: float) -> None:
    """One request (no retries) that reads the server's store: it fails when the server or
    the database behind it is down."""
    address = f"{uri.rstrip('/')}/api/2.0/mlflow/experiments/search?max_results=1"
    try:
        with urllib.request.urlopen(address, timeout=timeout_s):
            return
    except urllib.error.HTTPError as exc:
        if exc.code < 500:  # answered: e.g. 401/403 of an authenticating proxy
            return
        detail = exc.read().decode(errors="replace")[:300]
        raise BrainsegError(f"MLflow tracking server {_redacted(uri)} answers HTTP "
                            f"{exc.code}: its backend store fails ({detail})") from exc
    except (OSError, ValueError) as exc:
        raise BrainsegError(f"MLflow tracking server {_redacted(uri)} does not answer "
                            f"({getattr(exc, 'reason', exc)}): start it (docs/running.md) or "
                            "give another --tracking-uri") from exc


def _probe_database(uri: str, timeout_s: float) -> None:
    """Open and close one connection to a database store, with a connect timeout."""
    import sqlalchemy

    args = {"connect_timeout": int(timeout_s)} if uri.startswith(("postgresql", "mysql")) \
        else {}
    engine = sqlalchemy.create_engine(uri, connect_args=args, poolclass=sqlalchemy.NullPool)
    try:
        with engine.connect():
            return
    except sqlalchemy.exc.SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise BrainsegError(f"MLflow database {_redacted(uri)} is not reachable ({reason}): "
                            "start it or give another --tracking-uri") from exc
    finally:
        engine.dispose()


def check_tracking_store(uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Fail at once, with one message, when a remote tracking store is down.

    MLflow's own clients retry for minutes (HTTP with back-off; a database engine about
    100 s) before they raise; a training would load its data and then hang. An http(s)
    server gets one request that reads its store; a PostgreSQL/MySQL/MSSQL store, one
    connection. SQLite and file stores are local and not probed.

    Raises:
        BrainsegError: naming the URI (without password) and the fault.
    """
    scheme = urllib.parse.urlsplit(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        _probe_server(uri, timeout_s)
    elif scheme in _DB_SCHEMES:
        _probe_database(uri, timeout_s)


def setup_experiment(uri: str, name: str) -> str:
    """Point MLflow at `uri` and create experiment `name` once; returns its id.

    A file lock serializes the first use of a SQLite store (its schema migration races
    when several processes create it at once).

    Raises:
        BrainsegError: a remote store (server or database) does not answer.
    """
    import mlflow

    check_tracking_store(uri)

    mlflow.set_tracking_uri(uri)
    lock = _lock_path(uri)
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(lock)):
        experiment = mlflow.get_experiment_by_name(name)
        exp_id = experiment.experiment_id if experiment else mlflow.create_experiment(name)
    return exp_id


def git_commit() -> str:
    """The current git commit (with `-dirty` when the tree has changes), or `unknown`."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def dvc_dir_hash(folder: str | Path) -> str:
    """The hash DVC gives a directory output (`<md5>.dir`), computed without DVC.

    DVC hashes the JSON list of {"md5", "relpath"} entries of every file, sorted by path.
    """
    folder = Path(folder)
    entries = [
        {"md5": file_digests(p, "md5")[0], "relpath": p.relative_to(folder).as_posix()}
        for p in sorted(folder.rglob("*"), key=lambda q: q.relative_to(folder).as_posix())
        if p.is_file()
    ]
    blob = json.dumps(entries, sort_keys=True).encode()
    return hashlib.md5(blob).hexdigest() + ".dir"


def write_run_info(path: str | Path, run_id: str, experiment: str, **extra: str) -> None:
    """Record the MLflow run of a training (and its registered model, in `extra`), for
    `evaluate` and `figures` to log into."""
    info = {"run_id": run_id, "experiment": experiment, **extra}
    write_text(path, json.dumps(info, indent=1) + "\n")


def tag_model_version(uri: str, run_info: Path, metrics: dict[str, float]) -> None:
    """Tag the registered model version of a training with (test) metrics, if it has one."""
    info = read_run_info(run_info)
    if "model_version" not in info:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    for key, value in metrics.items():
        client.set_model_version_tag(info["model_name"], info["model_version"], key, f"{value:.6g}")


def read_run_info(path: str | Path) -> dict[str, str]:
    """Read what `write_run_info` wrote."""
    return json.loads(Path(path).read_text())
