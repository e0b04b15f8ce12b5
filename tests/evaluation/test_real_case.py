"""The real BraTS case through ingest, extract, normalize, prediction and 3D evaluation."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd

from brainseg.data.download import run_download
from brainseg.data.extract import run_extract
from brainseg.data.normalize import run_normalize
from brainseg.evaluation.evaluate import ALL_METRICS, run_evaluate
from tests.evaluation.test_inference import save_checkpoint


def test_real_case_end_to_end(params, real_case, tmp_path):
    params["download"].update(source="local", path=str(real_case.parent))
    params["extract"]["image_size"] = 64
    run_download(params=params, out_dir=tmp_path / "raw", jobs=1)
    run_extract(params=params, raw_dir=tmp_path / "raw", out_dir=tmp_path / "ext", jobs=1)
    run_normalize(params=params, in_dir=tmp_path / "ext", out_dir=tmp_path / "slices", jobs=1)
    image = np.load(tmp_path / "slices" / "TCGA-DU-7294" / "image.npy")
    label = np.load(tmp_path / "slices" / "TCGA-DU-7294" / "label.npy")
    assert image.shape[1:] == (4, 64, 64) and set(np.unique(label)) == {0, 1, 2}
    pd.DataFrame({"subject": ["TCGA-DU-7294"], "split": ["test"]}).to_csv(
        tmp_path / "splits.csv", index=False)
    save_checkpoint(tmp_path / "m.pt", image_size=64)
    metrics = run_evaluate(params=params, model=tmp_path / "m.pt", splits=tmp_path / "splits.csv",
                           raw_dir=tmp_path / "raw", pred_dir=tmp_path / "pred",
                           per_subject_out=tmp_path / "per_subject.csv",
                           metrics_out=tmp_path / "metrics.json")
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    pred = nib.load(tmp_path / "pred" / "TCGA-DU-7294_seg.nii.gz")
    raw = nib.load(real_case / "TCGA-DU-7294_flair.nii.gz")
    assert pred.shape == raw.shape == (240, 240, 155)
    np.testing.assert_array_equal(pred.affine, raw.affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= {0, 1, 2, 4}
    for region in ("WT", "TC", "ET"):
        assert 0.0 <= metrics["test"]["dice"][region] <= 1.0
    per_subject = pd.read_csv(tmp_path / "per_subject.csv")
    assert list(per_subject.columns) == ["subject", *[f"{m}_{r}" for m in ALL_METRICS
                                                      for r in ("WT", "TC", "ET")], "dice_mean"]
    assert metrics["test"]["n_subjects"] == 1
    assert set(metrics["test"]) == {"n_subjects", *ALL_METRICS}
    assert metrics["test_stats"]["dice"]["WT"]["median"] == metrics["test"]["dice"]["WT"]
    # the real reference has no enhancing tumour (labels 0, 1, 2 only)
    et = {m: metrics["test"][m]["ET"] for m in ("dice", "sensitivity", "hd95")}
    assert et in ({"dice": 1.0, "sensitivity": 1.0, "hd95": 0.0},
                  {"dice": 0.0, "sensitivity": 0.0, "hd95": 373.13})
    # lesion-wise (brats2025): no ET lesion in the reference; in the prediction, none
    # (undefined, null) or some (false lesions: Dice 0)
    assert metrics["test"]["lesionwise_dice"]["ET"] in (None, 0.0)
    assert metrics["test"]["lesionwise_fn"]["ET"] == 0
    assert 0.0 <= metrics["test"]["lesionwise_dice"]["WT"] <= 1.0
