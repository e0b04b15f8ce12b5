"""Subjects whose labels annotate the whole tumour only: TC and ET are not available."""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.evaluation.evaluate import summarize
from brainseg.evaluation.inference import model_inputs, scored_regions, trained_only
from brainseg.evaluation.labelmaps import PostprocessSettings
from brainseg.evaluation.lesions import LESION_METRICS, region_lesion_metrics
from brainseg.evaluation.metrics import METRICS, region_metrics
from brainseg.evaluation.postprocess import Case, score, tuned_regions
from brainseg.training.data import slice_channels
from brainseg.training.losses import SegmentationLoss


def wt_only_table(n: int = 3) -> pd.DataFrame:
    ref = np.zeros((8, 8, 4), np.uint8)
    ref[2:5, 2:5, 1:3] = 2
    rows = []
    for i in range(n):
        pred = np.zeros_like(ref)
        pred[2:5, 2 : 4 + i % 2, 1:3] = 2
        scores = region_metrics(pred, ref, (1.0, 1.0, 1.0), ("WT",))
        row = {"subject": f"s{i}"}
        row.update({f"{m}_{r}": scores[r][m] for m in METRICS for r in ("WT", "TC", "ET")})
        lesions = region_lesion_metrics(pred, ref, (1.0, 1.0, 1.0), ("WT",))
        row.update({f"{m}_{r}": lesions[r][m] for m in LESION_METRICS for r in ("WT", "TC", "ET")})
        row["dice_mean"] = scores["WT"]["dice"]
        rows.append(row)
    return pd.DataFrame(rows)


def test_metrics_of_regions_not_annotated_are_nan_and_summaries_say_not_available():
    per_subject = wt_only_table()
    assert per_subject[[f"{m}_TC" for m in (*METRICS, *LESION_METRICS)]].isna().all().all()
    assert per_subject["dice_WT"].between(0.5, 1).all()
    csv = per_subject.to_csv(index=False, na_rep="n/a")
    assert pd.read_csv(io.StringIO(csv))["dice_ET"].isna().all()  # "n/a" reads back as NaN
    metrics = summarize(per_subject)
    test, stats = metrics["test"], metrics["test_stats"]
    assert test["not_available"] == ["TC", "ET"]
    assert test["dice"]["TC"] is None and test["hd95"]["ET"] is None
    assert test["lesionwise_dice"]["TC"] is None and test["lesionwise_dice"]["WT"] is not None
    assert test["dice"]["mean"] == pytest.approx(per_subject["dice_WT"].mean())
    assert stats["dice"]["TC"] == {
        "available": False,
        "mean": None,
        "std": None,
        "median": None,
        "q1": None,
        "q3": None,
    }
    assert "available" not in stats["dice"]["WT"]
    json.dumps(metrics, allow_nan=False)  # valid JSON: null, never NaN


def test_the_loss_trains_wt_alone_for_wt_only_labels():
    torch.manual_seed(0)
    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:5, 2:5] = 2
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    SegmentationLoss("regions", regions=("WT",))(logits, labels).backward()
    assert logits.grad[:, 1:].abs().sum() == 0 and logits.grad[:, 0].abs().sum() > 0
    full = SegmentationLoss("regions")(logits[:, :1].expand(-1, 3, -1, -1), labels)
    assert torch.isfinite(full)
    softmax = torch.randn(2, 4, 8, 8, requires_grad=True)
    loss = SegmentationLoss("softmax", regions=("WT",))(softmax, labels)
    p_wt = 1 - torch.softmax(softmax, 1)[:, 0]
    target = (labels > 0).float()
    bce = torch.nn.functional.binary_cross_entropy(p_wt, target)
    dice = 1 - (2 * (p_wt * target).sum() + 1) / (p_wt.sum() + target.sum() + 1)
    assert loss.item() == pytest.approx((bce + dice).item(), rel=1e-5)
    with pytest.raises(BrainsegError, match="regions WT TC are not WT TC ET or WT alone"):
        SegmentationLoss("regions", regions=("WT", "TC"))


def test_postprocess_scores_and_tunes_only_the_available_regions():
    ref = np.zeros((3, 6, 6, 2), bool)
    ref[0, 1:4, 1:4] = True
    probs = np.zeros((3, 6, 6, 2), np.float32)
    probs[0, 1:4, 1:3] = 0.9
    case = Case("s0", {False: probs}, ref, (1.0, 1.0, 1.0), ("WT",))
    got = score([case], PostprocessSettings.uniform(0.5))
    assert np.isnan(got["TC"]) and np.isnan(got["ET"])
    assert got["mean"] == pytest.approx(got["WT"]) and 0.5 < got["WT"] < 1
    assert tuned_regions([case]) == ("WT",)


def test_a_subject_lacking_a_modality_the_model_needs_is_refused():
    volumes = [np.full((2, 2, 2), i, np.float32) for i in range(3)]
    config = {"modalities": ["t1", "t1ce", "flair"]}
    got = model_inputs(config, volumes, ("t1", "t1ce", "flair"), "S1")
    assert [float(v[0, 0, 0]) for v in got] == [0.0, 1.0, 2.0]
    four = model_inputs(config, [*volumes, volumes[0]], ("t1", "t1ce", "t2", "flair"), "S2")
    assert [float(v[0, 0, 0]) for v in four] == [0.0, 1.0, 0.0]  # t2 left out
    with pytest.raises(
        BrainsegError, match="S3: the model needs the modalities t1 t1ce t2 flair; missing t2"
    ):
        model_inputs({}, volumes, ("t1", "t1ce", "flair"), "S3")


def test_predict_takes_the_models_modalities_and_refuses_a_scan_lacking_one(tmp_path):
    from brainseg.evaluation.predict import run_predict
    from brainseg.models.unet import build_model
    from tests.conftest import write_subject
    from tests.evaluation.test_inference import MODEL

    torch.manual_seed(0)
    config = {
        "model": {**MODEL, "in_channels": 3},
        "extract": {"image_size": 32, "margin": 2, "min_brain_pixels": 4},
        "normalize": {"clip_percentiles": [0.5, 99.5]},
        "regions": ["WT", "TC", "ET"],
        "modalities": ["t1", "t1ce", "flair"],
    }
    ckpt = tmp_path / "lgg.pt"
    torch.save(
        {"state_dict": build_model(config["model"]).state_dict(), "config": config, "epoch": 1},
        ckpt,
    )
    folder = write_subject(tmp_path / "in", "S-001")
    (folder / "S-001_t2.nii.gz").unlink()  # not needed by this model
    (out,) = run_predict(model=str(ckpt), inputs=[folder], output=tmp_path / "a.nii.gz")
    files = [folder / f"S-001_{k}.nii.gz" for k in ("t1", "t1ce", "flair")]
    (listed,) = run_predict(model=str(ckpt), inputs=files, output=tmp_path / "b.nii.gz")
    assert out.read_bytes() == listed.read_bytes()
    (folder / "S-001_flair.nii.gz").unlink()
    with pytest.raises(BrainsegError, match="S-001: missing modality flair"):
        run_predict(model=str(ckpt), inputs=[folder], output=tmp_path / "c.nii.gz")


def test_a_wt_only_model_predicts_and_is_scored_on_wt_alone():
    probs = np.full((3, 2, 2, 1), 0.9, np.float32)
    trained_only(probs, {"regions": ["WT"]})
    assert (probs[0] == np.float32(0.9)).all() and not probs[1:].any()
    assert scored_regions({"regions": ["WT"]}, ("WT", "TC", "ET")) == ("WT",)
    assert scored_regions({}, ("WT",)) == ("WT",)
    assert scored_regions({}, ("WT", "TC", "ET")) == ("WT", "TC", "ET")


def test_the_slice_store_gives_the_channels_and_refuses_mixed_modalities(tmp_path):
    for name, modalities, regions in (
        ("a", ["t1", "t1ce", "flair"], ["WT"]),
        ("b", ["t1", "t1ce", "flair"], ["WT", "TC", "ET"]),
    ):
        (tmp_path / name).mkdir()
        meta = {"modalities": modalities, "regions": regions}
        (tmp_path / name / "meta.json").write_text(json.dumps(meta))
    assert slice_channels([tmp_path / "a", tmp_path / "b"]) == (("t1", "t1ce", "flair"), ("WT",))
    (tmp_path / "c").mkdir()  # no meta.json: the four modalities
    with pytest.raises(BrainsegError, match=r"c/meta\.json: modalities t1 t1ce t2 flair differ"):
        slice_channels([tmp_path / "a", tmp_path / "c"])
