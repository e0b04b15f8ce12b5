"""Start-up cost: a command imports only what it needs.

Each case runs a real `brainseg` command in a fresh interpreter and lists the heavy
packages it loaded. `brainseg predict` of a checkpoint must not load pandas,
scikit-learn, MLflow or matplotlib (about 2 s of a fresh command on this kind of
machine; see docs/performance.md), nor ONNX Runtime, nor scipy.ndimage without
clean-up; `brainseg download --help` not even torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from brainseg.data.loading import load_subject
from tests.conftest import write_subject
from tests.evaluation.test_predict import save_varied_checkpoint

HEAVY = ("pandas", "sklearn", "mlflow", "matplotlib", "onnxruntime", "onnx", "torch",
         "albumentations", "nilearn", "fastapi", "uvicorn", "dvc", "snakemake", "jsonschema",
         "scipy.ndimage")  # a package, or a module of one (0.2 s, only for clean-up)

PROBE = """
import json, sys
from brainseg.cli import main
try:
    status = main(sys.argv[2:])
except SystemExit as exc:
    status = exc.code
heavy = json.loads(sys.argv[1])
loaded = sorted(({m.split('.')[0] for m in sys.modules} | set(sys.modules)) & set(heavy))
print(json.dumps({"status": status, "loaded": loaded}))
"""


def loaded_by(args: list[str]) -> list[str]:
    """The heavy packages (and modules named in HEAVY) a fresh `brainseg <args>` imported."""
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(HEAVY), "-q", *args],
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["status"] in (0, None), out.stderr
    return result["loaded"]


def test_predict_of_a_checkpoint_loads_only_torch(tmp_path: Path):
    subject = write_subject(tmp_path / "in", "S1")
    model = save_varied_checkpoint(tmp_path / "model.pt", load_subject(subject).image)
    out = tmp_path / "S1_pred.nii.gz"
    assert loaded_by(["predict", "--model", str(model), "--input", str(subject),
                      "--output", str(out)]) == ["torch"]
    assert out.is_file()


@pytest.mark.parametrize("command", ["download", "extract", "split", "params"])
def test_data_commands_help_does_not_load_torch(command: str):
    assert "torch" not in loaded_by([command, "--help"])
