"""The `figures` stage end to end: tiny subjects logged to a real MLflow store, and the
real BraTS case at the default GIF settings."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.errors import BrainsegError
from brainseg.reporting.figures import FIGURES, run_figures
from brainseg.tracking import setup_experiment, write_run_info
from tests.conftest import REPO, write_subject
from tests.training.conftest import write_store

HISTORY = pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "val_loss": [1.1, 0.6],
                        "val_dice_WT": [0.3, 0.8], "val_dice_TC": [0.2, 0.6],
                        "val_dice_ET": [0.1, 0.5], "val_dice_mean": [0.2, 0.63]})


def predict_by_shifting(raw_dir: Path, pred_dir: Path, subject: str, shift: int) -> dict:
    """Write the reference moved by `shift` voxels in x as the prediction; its CSV row."""
    ref_img = nib.load(raw_dir / subject / f"{subject}_seg.nii.gz")
    ref = np.asarray(ref_img.dataobj).astype(np.uint8)
    pred = np.roll(ref, shift, axis=0)
    pred_dir.mkdir(exist_ok=True)
    nib.save(nib.Nifti1Image(pred, ref_img.affine), pred_dir / f"{subject}_seg.nii.gz")
    row: dict = {"subject": subject}
    for region, r, p in zip(REGIONS, labels_to_regions(ref), labels_to_regions(pred),
                            strict=True):
        total = r.sum() + p.sum()
        row[f"dice_{region}"] = 2 * (r & p).sum() / total if total else 1.0
        row[f"hd95_{region}"] = float(abs(shift))
    row["dice_mean"] = np.mean([row[f"dice_{r}"] for r in REGIONS])
    return row


def inputs(tmp_path: Path, raw_dir: Path, shifts: dict[str, int]) -> tuple[Path, Path]:
    rows = [predict_by_shifting(raw_dir, tmp_path / "pred", s, k) for s, k in shifts.items()]
    HISTORY.to_csv(tmp_path / "history.csv", index=False)
    pd.DataFrame(rows).to_csv(tmp_path / "per_subject.csv", index=False)
    return tmp_path / "history.csv", tmp_path / "per_subject.csv"


def training_slices(tmp_path: Path) -> dict[str, Path]:
    """A normalize-stage store with two training subjects: slices_dir and splits."""
    root = write_store(tmp_path / "store", {"S-0": "train", "S-1": "train", "S-2": "val"})
    return {"slices_dir": root / "slices", "splits": root / "splits.csv"}


def test_figures_are_drawn_and_logged_to_the_training_run(params, tmp_path):
    raw = tmp_path / "raw"
    shifts = {f"TINY-{i:03d}": i for i in range(4)}
    for i, subject in enumerate(shifts):
        write_subject(raw, subject, seed=i)
    history, per_subject = inputs(tmp_path, raw, shifts)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    import mlflow

    mlflow.set_tracking_uri(uri)
    with mlflow.start_run(experiment_id=setup_experiment(uri, "figures-test")) as run:
        pass
    write_run_info(tmp_path / "run.json", run.info.run_id, "figures-test")
    out = tmp_path / "reports" / "figures"
    paths = run_figures(params=params, history=history, per_subject=per_subject, raw_dir=raw,
                        pred_dir=tmp_path / "pred", out_dir=out, run_info=tmp_path / "run.json",
                        tracking_uri=uri, **training_slices(tmp_path))
    assert sorted(p.name for p in out.iterdir()) == sorted(FIGURES) == sorted(p.name for p in paths)
    logged = MlflowClient(tracking_uri=uri).list_artifacts(run.info.run_id, "figures")
    assert sorted(a.path for a in logged) == sorted(f"figures/{f}" for f in FIGURES)
    gif = Image.open(out / "overlay_median.gif")
    assert gif.n_frames <= params["figures"]["gif"]["max_frames"]
    assert not list(tmp_path.rglob(".tmp-*"))


def test_a_missing_prediction_stops_with_its_path_and_leaves_nothing(params, tmp_path):
    raw = tmp_path / "raw"
    write_subject(raw, "TINY-000")
    write_subject(raw, "TINY-001", seed=1)
    history, per_subject = inputs(tmp_path, raw, {"TINY-000": 0, "TINY-001": 1})
    (tmp_path / "pred" / "TINY-001_seg.nii.gz").unlink()
    out = tmp_path / "figures"
    with pytest.raises(BrainsegError, match=r"pred/TINY-001_seg\.nii\.gz: missing"):
        run_figures(params=params, history=history, per_subject=per_subject, raw_dir=raw,
                    pred_dir=tmp_path / "pred", out_dir=out, **training_slices(tmp_path))
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_a_prediction_on_another_grid_is_refused(params, tmp_path):
    raw = tmp_path / "raw"
    write_subject(raw, "TINY-000")
    history, per_subject = inputs(tmp_path, raw, {"TINY-000": 0})
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.uint8), np.eye(4)),
             tmp_path / "pred" / "TINY-000_seg.nii.gz")
    with pytest.raises(BrainsegError, match=r"TINY-000_seg\.nii\.gz: shape \(8, 8, 8\) differs"):
        run_figures(params=params, history=history, per_subject=per_subject, raw_dir=raw,
                    pred_dir=tmp_path / "pred", out_dir=tmp_path / "f",
                    **training_slices(tmp_path))


def test_real_case_figures_at_the_default_gif_settings(params, real_case, tmp_path):
    """The real scan (240 x 240 x 155) with the GIF settings of params.yaml: under 2 MB."""
    params["figures"]["gif"] = yaml.safe_load((REPO / "params.yaml").read_text())["figures"]["gif"]
    history, per_subject = inputs(tmp_path, real_case.parent, {real_case.name: 3})
    out = tmp_path / "figures"
    run_figures(params=params, history=history, per_subject=per_subject,
                raw_dir=real_case.parent, pred_dir=tmp_path / "pred", out_dir=out,
                **training_slices(tmp_path))
    gif = out / "overlay_median.gif"
    assert 0 < gif.stat().st_size < 2 * 1024 * 1024
    frames = Image.open(gif).n_frames
    assert 1 < frames <= params["figures"]["gif"]["max_frames"]
    for name in FIGURES:
        assert (out / name).stat().st_size > 1000, name
