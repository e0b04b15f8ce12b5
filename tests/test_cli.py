"""The command line: --help for every stage, and bad input ending in one clear message."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from brainseg.cli import COMMANDS
from brainseg.models.unet import build_model
from tests.conftest import REPO, write_subject
from tests.evaluation.test_inference import MODEL, save_checkpoint


def brainseg(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "brainseg", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_subcommand_explains_every_option(command, tmp_path):
    result = brainseg(command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    options = [line.split()[0] for line in result.stdout.splitlines()
               if line.strip().startswith("--")]
    # every pipeline stage reads params.yaml; predict and export take their settings from the
    # model, `params` writes a params file from a base one, compare reads two evaluations,
    # and `view` shows a finished run
    expected = {"predict": "--model", "export": "--model", "params": "--base",
                "compare": "--metric", "view": "--run"}.get(command, "--params")
    assert expected in options
    # every option line is followed by (or carries) a description
    assert "help" in result.stdout and len(result.stdout.splitlines()) > len(options) + 3


def test_every_command_leads_to_a_module_and_function_of_its_name():
    """`brainseg <stage>` -> module `<stage>` -> `run_<stage>()` (dashes become underscores)."""
    import importlib

    for command, (module, _, _) in COMMANDS.items():
        name = command.replace("-", "_")
        assert module.rsplit(".", 1)[1] == name, (command, module)
        assert callable(getattr(importlib.import_module(module), f"run_{name}")), module


def local_params(tmp_path: Path, source_dir: Path) -> Path:
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["download"].update(source="local", path=str(source_dir))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_unknown_params_key_exits_non_zero_naming_it(tmp_path):
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["extract"]["image_sise"] = 64
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = brainseg("split", "--params", "params.yaml", "--manifest", "m.csv", "--out", "s.csv",
                      cwd=tmp_path)
    assert result.returncode == 1
    assert "invalid key 'extract.image_sise'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "s.csv").exists()


# Values the generator cannot take that the params schema once let through; the schema now
# holds the generator's ranges, so each ends at validation with one line naming the key.
OUT_OF_RANGE = [
    ("tumor_radius_mm", [0.5, 20.0]), ("tumor_radius_mm", [14.0, 60.0]),
    ("n_lesions", [1, 6]), ("deformation_mm", 25.0), ("noise", 1.5),
    ("core_fraction", [0.005, 0.5]), ("core_fraction", [0.5, 1.0]), ("edema_wm_bias", 12.0),
    ("mass_effect_mm", 25.0), ("ventricle_scale", [0.3, 1.0]), ("ventricle_scale", [1.0, 3.0]),
]


@pytest.mark.parametrize(("key", "value"), OUT_OF_RANGE)
def test_out_of_range_synthetic_knob_exits_1_with_one_line_naming_it(key, value, tmp_path):
    params = yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())
    params["download"]["synthetic"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = brainseg("download", "--params", "params.yaml", "--out-dir", "raw", cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"invalid key 'download.synthetic.{key}" in lines[0], lines
    assert not (tmp_path / "raw").exists()


def _rewrite(path: Path, edit) -> None:
    img = nib.load(path)
    data = np.asarray(img.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(edit(data), img.affine), path)


def _set(index, value):
    def edit(data):
        data[index] = value
        return data
    return edit


BREAKERS = {
    "missing modality": (lambda f: (f / "BAD-001_t2.nii.gz").unlink(), "missing modality t2"),
    "truncated": (lambda f: (f / "BAD-001_flair.nii.gz").write_bytes(
        (f / "BAD-001_flair.nii.gz").read_bytes()[:200]), "BAD-001_flair.nii.gz: cannot read"),
    "unknown label": (lambda f: _rewrite(f / "BAD-001_seg.nii.gz", _set((1, 1, 1), 3)),
                      "BAD-001_seg.nii.gz: label values [3] are not defined by layout brats2020"),
    "nan": (lambda f: _rewrite(f / "BAD-001_t1ce.nii.gz", _set((5, 5, 5), np.nan)),
            "BAD-001_t1ce.nii.gz: 1 voxels are NaN or infinite"),
    "shape": (lambda f: _rewrite(f / "BAD-001_t1.nii.gz", lambda d: d[:, :, :10]),
              "BAD-001_t1ce.nii.gz: shape (32, 32, 12) differs from BAD-001_t1.nii.gz"),
}


@pytest.mark.parametrize("case", sorted(BREAKERS))
def test_bad_subject_fails_download_and_extract_cleanly(case, tmp_path):
    source = tmp_path / "source"
    for i in range(3):
        write_subject(source, f"OK-{i:03d}", seed=i)
    folder = write_subject(source, "BAD-001", seed=9)
    breaker, message = BREAKERS[case]
    breaker(folder)
    params = local_params(tmp_path, source)
    result = brainseg("download", "--params", str(params), "--out-dir", "raw", "--jobs", "1",
                      cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "raw" / "manifest.csv").exists()
    assert not (tmp_path / "raw" / "BAD-001").exists()
    # extract on a raw folder holding the bad subject fails the same way, leaving nothing
    shutil.copytree(folder, tmp_path / "raw" / "BAD-001")
    result = brainseg("extract", "--params", str(params), "--raw-dir", "raw", "--out-dir", "ext",
                      "--subject", "BAD-001", cwd=tmp_path)
    assert result.returncode == 1 and message in result.stderr
    ext = tmp_path / "ext"
    assert (list(ext.rglob("*")) if ext.exists() else []) == []  # no temporary leftovers


def _other_architecture(ckpt: Path) -> None:
    checkpoint = torch.load(ckpt, weights_only=True)
    checkpoint["state_dict"] = build_model({**MODEL, "depth": 3}).state_dict()
    torch.save(checkpoint, ckpt)


PREDICT_BREAKERS = {
    "missing modality": (lambda f, m: (f / "P-001_t2.nii.gz").unlink(),
                         "P-001: missing modality t2 (brats2020 names"),
    "mismatched shapes": (lambda f, m: _rewrite(f / "P-001_flair.nii.gz", lambda d: d[:, :, :10]),
                          "P-001_flair.nii.gz: shape (32, 32, 10) differs from P-001_t1.nii.gz"),
    "missing checkpoint": (lambda f, m: m.unlink(), "m.pt: checkpoint not found"),
    "corrupt checkpoint": (lambda f, m: m.write_bytes(m.read_bytes()[:300]),
                           "m.pt: cannot load checkpoint (corrupt or not a torch file?)"),
    "other architecture": (lambda f, m: _other_architecture(m),
                           "m.pt: weights do not match the architecture of its config"),
}


@pytest.mark.parametrize("case", sorted(PREDICT_BREAKERS))
def test_predict_bad_input_exits_1_with_one_message_and_no_output(case, tmp_path):
    folder = write_subject(tmp_path / "in", "P-001")
    save_checkpoint(tmp_path / "m.pt")
    breaker, message = PREDICT_BREAKERS[case]
    breaker(folder, tmp_path / "m.pt")
    result = brainseg("predict", "--model", "m.pt", "--input", str(folder), "--output",
                      "out/P-001_seg.nii.gz", cwd=tmp_path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_predict_batch_writes_the_good_subjects_and_exits_1_naming_the_bad(tmp_path):
    for i in range(2):
        write_subject(tmp_path / "in", f"P-00{i}", seed=i)
    (write_subject(tmp_path / "in", "P-009", seed=9) / "P-009_t1ce.nii.gz").unlink()
    save_checkpoint(tmp_path / "m.pt")
    result = brainseg("predict", "--model", "m.pt", "--input", "in", "--output", "out",
                      "--threads", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert "P-009: failed:" in result.stderr and "missing modality t1ce" in result.stderr
    assert "1 of 3 subjects failed" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "P-000_seg.nii.gz", "P-001_seg.nii.gz"]
    result = brainseg("predict", "--model", "m.pt", "--input", "in/P-000", "--output",
                      "one.nii.gz", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "one.nii.gz").read_bytes() == (tmp_path / "out" / "P-000_seg.nii.gz"
                                                      ).read_bytes()
