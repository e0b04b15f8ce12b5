"""The MLflow run of a training ends with the status of how the training ended."""

from __future__ import annotations

import pytest
import yaml

from brainseg.errors import Stopped
from tests.conftest import REPO


@pytest.mark.parametrize(("raised", "status"), [(None, "FINISHED"), (Stopped, "KILLED"),
                                                (KeyboardInterrupt, "KILLED"),
                                                (ValueError, "FAILED")])
def test_the_run_is_finished_killed_or_failed(raised, status, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from brainseg.training.mlflow_run import TrainingRun

    monkeypatch.chdir(tmp_path)  # the store's artifacts land in the working folder
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = TrainingRun(uri, "status", params, tmp_path)
    if raised is None:
        with run:
            run.log_epoch({"epoch": 1, "train_loss": 0.5})
    else:
        with pytest.raises(raised), run:  # the exception goes on, whatever the store says
            run.log_epoch({"epoch": 1, "train_loss": 0.5})
            raise raised("stopped" if raised is Stopped else "x")
    assert MlflowClient(uri).get_run(run.run_id).info.status == status
