"""Where `brainseg compare` reads an evaluation's per-subject table from.

A source is one of:

- a folder: `<folder>/per_subject.csv` (a reports/ folder) or
  `<folder>/reports/per_subject.csv` (a repository root or a copy of one), or a CSV file;
- `rev:<REV>`: `reports/per_subject.csv` at a git revision (`rev:HEAD~1`, `rev:main`, a
  commit, a tag) or a DVC experiment (`rev:exp-1a2b3`, its name in `dvc exp show`) of
  the repository `repo`, read with `dvc.api.read`. dvc.yaml declares the file as a plot
  of `evaluate` with `cache: false`, so git holds it at every revision; a cached output
  would be read from the DVC cache the same way;
- `runs:/<run_id>`: the `evaluation/per_subject.csv` artifact that `evaluate` logs to
  the training's MLflow run (`runs:/<run_id>/<path>` for another artifact path), read
  back with `MlflowClient` from the tracking URI.
"""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pandas as pd

from brainseg.data.labels import NOT_AVAILABLE
from brainseg.errors import BrainsegError

PER_SUBJECT = "per_subject.csv"
#: Where the table lives in a repository, and so at a revision.
REPO_PATH = f"reports/{PER_SUBJECT}"
#: Where `evaluate` logs the table in the training's MLflow run.
RUN_ARTIFACT = f"evaluation/{PER_SUBJECT}"


class SourceError(BrainsegError):
    """A source cannot be read: its text says why (without naming the other source)."""


def read_source(source: str, repo: Path = Path("."), tracking_uri: str = "") -> pd.DataFrame:
    """The per-subject table of one source (see the module docstring for the forms).

    Args:
        source: a folder or CSV path, `rev:<REV>` or `runs:/<run_id>[/<path>]`.
        repo: the git/DVC repository of `rev:` sources.
        tracking_uri: the MLflow tracking URI of `runs:/` sources.

    Returns:
        The table as read (`n/a` as NaN), one row per subject.

    Raises:
        SourceError: the source does not exist, or is not a readable CSV table.
    """
    if source.startswith("rev:"):
        text = _read_revision(source.removeprefix("rev:"), repo)
    elif source.startswith("runs:/"):
        text = _read_run(source.removeprefix("runs:/"), tracking_uri)
    else:
        text = _read_folder(Path(source))
    try:
        table = pd.read_csv(io.StringIO(text), na_values=[NOT_AVAILABLE])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise SourceError(f"not a CSV table ({exc})") from exc
    if "subject" not in table.columns:
        raise SourceError(f"no `subject` column (columns: {', '.join(map(str, table.columns))})")
    if table.empty:
        raise SourceError("the table has no subject")
    duplicated = sorted(set(table.loc[table["subject"].duplicated(), "subject"]))
    if duplicated:
        raise SourceError(f"subjects listed twice: {', '.join(map(str, duplicated[:5]))}")
    return table


def _read_folder(path: Path) -> str:
    candidates = [path] if path.suffix == ".csv" else [path / PER_SUBJECT, path / REPO_PATH]
    for candidate in candidates:
        if candidate.is_file():
            try:
                return candidate.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise SourceError(f"cannot read {candidate}: {exc}") from exc
    raise SourceError(f"no {' or '.join(str(c) for c in candidates)}")


def _read_revision(rev: str, repo: Path) -> str:
    if not rev:
        raise SourceError("`rev:` needs a revision (rev:HEAD~1, rev:main, rev:<experiment>)")
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        return dvc.api.read(REPO_PATH, repo=str(repo), rev=rev)
    except (DvcException, OSError, UnicodeDecodeError) as exc:
        raise SourceError(f"cannot read {REPO_PATH} at revision {rev!r} of {repo}: "
                          f"{exc}") from exc


def _read_run(rest: str, tracking_uri: str) -> str:
    run_id, _, artifact = rest.strip("/").partition("/")
    if not run_id:
        raise SourceError("`runs:/` needs a run id (runs:/<run_id>)")
    artifact = artifact or RUN_ARTIFACT
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="brainseg-compare-") as tmp:
        try:
            client.get_run(run_id)
            local = client.download_artifacts(run_id, artifact, dst_path=tmp)
            return Path(local).read_text()
        except (MlflowException, OSError, UnicodeDecodeError) as exc:
            raise SourceError(f"cannot read artifact {artifact} of MLflow run {run_id} at "
                              f"{tracking_uri}: {str(exc).splitlines()[0]}") from exc
