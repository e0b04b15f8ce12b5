from __future__ import annotations

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.errors import BrainsegError
from brainseg.evaluation.evaluate import run_evaluate
from brainseg.evaluation.labelmaps import PostprocessSettings, read_settings
from brainseg.evaluation.postprocess import (
    Case,
    case_dice,
    choose,
    cross_validated,
    make_case,
    mean_dice,
    run_postprocess,
    score,
)
from brainseg.tracking import write_run_info
from tests.conftest import write_subject
from tests.evaluation.test_inference import save_checkpoint

SHAPE = (24, 24, 12)
SPACING = (1.0, 1.0, 2.0)  # 2 mm3 per voxel
CFG = {"min_gain": 0.0, "flip_tta": True, "thresholds": [0.3, 0.5, 0.7],
       "min_component_mm3": {"WT": 50.0, "TC": 100.0, "ET": 20.0}, "et_to_necrosis_mm3": 100.0}


def ball(radius: float, centre=(10, 10, 6)) -> np.ndarray:
    x, y, z = np.indices(SHAPE)
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (2 * (z - centre[2])) ** 2 <= radius**2


def constructed_arrays() -> tuple[dict[bool, np.ndarray], np.ndarray]:
    """Probabilities (without and with "TTA") and labels of a case where the winners are known.

    - reference: WT ball r=6 with a TC ball r=3 inside, no enhancing tumour;
    - WT probability 0.6 on the ball, and 0.9 on a far 2x2x2 blob (16 mm3): removing
      components under 50 mm3 helps; WT thresholds 0.3 (same masks: a tie) or 0.7 (only
      the blob) do not;
    - TC probability 0.45 on the core (0.9 on an ET blob inside it): TC 0.3 wins;
    - ET probability 0.9 on a 3x3x3 blob in the core (54 mm3, above the 20 mm3 component
      limit, below the 100 mm3 necrosis limit): ET -> necrosis wins;
    - the "TTA" probabilities lose every WT voxel of the ball: flip TTA is not chosen.
    """
    wt_ref, tc_ref = ball(6), ball(3)
    seg = np.where(tc_ref, 1, np.where(wt_ref, 2, 0)).astype(np.uint8)
    probs = np.zeros((3, *SHAPE), np.float32)
    probs[0][wt_ref] = 0.6
    probs[0][20:22, 20:22, 1:3] = 0.9
    probs[1][tc_ref] = 0.45
    et_blob = (slice(9, 12), slice(9, 12), slice(5, 8))
    probs[1][et_blob] = probs[2][et_blob] = 0.9
    worse = probs.copy()
    worse[0][wt_ref] = 0.2
    return {False: probs, True: worse}, seg


def constructed_case() -> Case:
    return make_case("S-1", *constructed_arrays(), SPACING, floor=0.3)


def test_greedy_selection_keeps_only_the_options_that_help():
    search = choose([constructed_case()], CFG, base_threshold=0.5)
    assert search.current == PostprocessSettings(
        thresholds={"WT": 0.5, "TC": 0.3, "ET": 0.5},
        min_component_mm3={"WT": 50.0, "TC": 0.0, "ET": 0.0},
        et_to_necrosis_mm3=100.0, flip_tta=False)
    assert search.baseline["ET"] == 0.0 and search.best == pytest.approx(
        {"WT": 1.0, "TC": 1.0, "ET": 1.0, "mean": 1.0})
    table = search.table()
    assert table["option"].tolist() == [
        "baseline", "flip_tta", "threshold_WT", "threshold_WT", "threshold_TC", "threshold_TC",
        "threshold_ET", "threshold_ET", "min_component_mm3_WT", "min_component_mm3_TC",
        "min_component_mm3_ET", "et_to_necrosis_mm3"]
    chosen = table.loc[table["chosen"], ["option", "value"]].values.tolist()
    assert chosen == [["baseline", ""], ["threshold_TC", 0.3], ["min_component_mm3_WT", 50.0],
                      ["et_to_necrosis_mm3", 100.0]]
    assert (table["dice_mean"] == table[[f"dice_{r}" for r in REGIONS]].mean(axis=1)).all()


def test_cross_validated_scores_each_fold_with_settings_chosen_without_it():
    """Fold A wants TC threshold 0.3 (its core has probability 0.45); fold B is hurt by it
    (0.45 on the edema around a core of 0.9): each is scored with the other's choice."""
    a = constructed_case()
    probs, seg = constructed_arrays()
    probs = {k: p.copy() for k, p in probs.items()}
    for p in probs.values():
        p[1] = np.where(ball(3), 0.9, np.where(ball(6), 0.45, 0.0))
    b = make_case("S-2", probs, seg, SPACING, floor=0.3)
    for_a, for_b = choose([b], CFG, 0.5).current, choose([a], CFG, 0.5).current
    assert for_b.thresholds["TC"] == 0.3 and for_a.thresholds["TC"] == 0.5
    nested = cross_validated([[a], [b]], CFG, base_threshold=0.5)
    assert nested == pytest.approx(mean_dice([case_dice(a, for_a), case_dice(b, for_b)]))
    same = choose([a, b], CFG, 0.5).best
    assert nested["TC"] < same["TC"] and nested["mean"] < same["mean"]  # the optimism removed


def test_ties_keep_the_simpler_setting_and_off_options_are_not_tried():
    case = constructed_case()
    case.probs[True] = case.probs[False]  # TTA changes nothing: a tie
    cfg = {**CFG, "thresholds": [], "min_component_mm3": {"WT": 0, "TC": 0, "ET": 0},
           "et_to_necrosis_mm3": 0}
    search = choose([case], cfg, base_threshold=0.5)
    assert search.current == PostprocessSettings.uniform(0.5)
    assert search.table()["option"].tolist() == ["baseline", "flip_tta"]
    cfg["flip_tta"] = False
    assert choose([case], cfg, 0.5).table()["option"].tolist() == ["baseline"]


def test_gains_within_min_gain_are_not_kept():
    search = choose([constructed_case()], {**CFG, "min_gain": 0.9}, base_threshold=0.5)
    assert search.current == PostprocessSettings.uniform(0.5)
    table = search.table()
    assert table["chosen"].tolist() == [True] + [False] * (len(table) - 1)
    assert table["gain"].max() > 0, "some step helped, by less than min_gain"


def test_flip_tta_is_chosen_when_it_helps():
    case = constructed_case()
    case.probs[False], case.probs[True] = case.probs[True], case.probs[False]
    search = choose([case], {**CFG, "thresholds": [0.5]}, base_threshold=0.5)
    assert search.current.flip_tta


def test_cropping_the_cases_changes_no_score():
    probs, seg = constructed_arrays()
    cropped = make_case("S-1", probs, seg, SPACING, floor=0.3)
    assert cropped.probs[False].shape[1:] == cropped.ref.shape[1:] == (18, 18, 9)
    full = Case("S-1", probs, labels_to_regions(seg), SPACING)
    for settings in (PostprocessSettings.uniform(0.3), PostprocessSettings(
            thresholds=0.7, min_component_mm3=20.0, et_to_necrosis_mm3=100.0, flip_tta=True)):
        assert score([cropped], settings) == score([full], settings)
    empty = make_case("S-2", {False: np.zeros((3, 4, 4, 4), np.float32)},
                      np.zeros((4, 4, 4), np.uint8), SPACING, floor=0.3)
    assert empty.ref.shape == empty.probs[False].shape == (3, 1, 1, 1)  # one voxel


@pytest.fixture
def stage_inputs(tmp_path):
    """Raw subjects, a split with two validation subjects and a checkpoint."""
    raw = tmp_path / "raw"
    subjects = [f"S-{i:03d}" for i in range(4)]
    for i, s in enumerate(subjects):
        write_subject(raw, s, seed=i)
    splits = tmp_path / "splits.csv"
    pd.DataFrame({"subject": subjects, "split": ["train", "val", "val", "test"]}).to_csv(
        splits, index=False)
    save_checkpoint(tmp_path / "model.pt")
    return tmp_path, raw, splits


def test_stage_writes_settings_table_and_logs_them(stage_inputs, params):
    tmp_path, raw, splits = stage_inputs
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        run_id = run.info.run_id
    write_run_info(tmp_path / "run.json", run_id, "Default")
    out_json, out_csv = tmp_path / "reports/postprocess.json", tmp_path / "reports/postprocess.csv"
    out_cv = tmp_path / "reports/postprocess_cv.json"
    settings = run_postprocess(params=params, model=tmp_path / "model.pt", splits=splits,
                               raw_dir=raw, settings_out=out_json, table_out=out_csv,
                               cv_out=out_cv, run_info=tmp_path / "run.json", tracking_uri=uri)
    assert json.loads(out_cv.read_text()) == {  # no folds: nothing cross-validated
        "folds": 0, "plain": None, "chosen_on_same_subjects": None, "cross_validated": None}
    assert read_settings(out_json) == settings
    table = pd.read_csv(out_csv)
    assert table["option"].iloc[0] == "baseline" and table["chosen"].iloc[0]
    assert table["dice_mean"].between(0, 1).all()
    chosen_rows = table[table["chosen"]]
    found = MlflowClient(tracking_uri=uri).get_run(run_id)
    assert found.data.metrics["postprocess_val_dice_mean"] == pytest.approx(
        chosen_rows["dice_mean"].iloc[-1])
    assert found.data.metrics["postprocess.chosen.thresholds.TC"] == settings.thresholds["TC"]
    assert found.data.metrics["postprocess.chosen.flip_tta"] == float(settings.flip_tta)
    artifacts = {a.path for a in MlflowClient(tracking_uri=uri).list_artifacts(run_id,
                                                                               "postprocess")}
    assert artifacts == {"postprocess/postprocess.json", "postprocess/postprocess.csv",
                         "postprocess/postprocess_cv.json"}

    # evaluate applies the chosen settings to the test subject
    metrics = run_evaluate(params=params, model=tmp_path / "model.pt", splits=splits,
                           raw_dir=raw, pred_dir=tmp_path / "pred",
                           per_subject_out=tmp_path / "per_subject.csv",
                           metrics_out=tmp_path / "metrics.json", tracking_uri=uri,
                           postprocess=out_json)
    assert metrics["test"]["n_subjects"] == 1


def test_stage_refuses_an_empty_validation_split(stage_inputs, params):
    tmp_path, raw, splits = stage_inputs
    pd.DataFrame({"subject": ["S-000"], "split": ["train"]}).to_csv(splits, index=False)
    with pytest.raises(BrainsegError, match=f"{splits}: no subject in the 'val' split"):
        run_postprocess(params=params, model=tmp_path / "model.pt", splits=splits, raw_dir=raw,
                        settings_out=tmp_path / "p.json", table_out=tmp_path / "p.csv")
    assert not (tmp_path / "p.json").exists()


def test_evaluate_refuses_a_bad_settings_file_before_writing_anything(stage_inputs, params):
    tmp_path, raw, splits = stage_inputs
    bad = tmp_path / "postprocess.json"
    bad.write_text(json.dumps({"thresholds": 2}))
    with pytest.raises(BrainsegError, match=f"{bad}: "):
        run_evaluate(params=params, model=tmp_path / "model.pt", splits=splits, raw_dir=raw,
                     pred_dir=tmp_path / "pred", per_subject_out=tmp_path / "per_subject.csv",
                     metrics_out=tmp_path / "metrics.json", postprocess=bad)
    assert not (tmp_path / "pred").exists() and not (tmp_path / "metrics.json").exists()
