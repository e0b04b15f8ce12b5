from __future__ import annotations

import json

import numpy as np
import pytest

from brainseg.data.labels import regions_to_labels
from brainseg.errors import BrainsegError
from brainseg.evaluation.labelmaps import (
    PostprocessSettings,
    apply,
    read_settings,
    remove_small_components,
    write_settings,
)

SHAPE = (12, 12, 8)


def probs_of(wt=(), tc=(), et=()) -> np.ndarray:
    """Region probabilities (3, *SHAPE): 0.9 on the listed voxel boxes, 0 elsewhere."""
    probs = np.zeros((3, *SHAPE), np.float32)
    for channel, boxes in enumerate((wt, tc, et)):
        for box in boxes:
            probs[(channel, *box)] = 0.9
    return probs


def box(x0, x1, y0, y1, z0, z1):
    return (slice(x0, x1), slice(y0, y1), slice(z0, z1))


def test_default_settings_are_the_plain_threshold_with_nesting():
    probs = np.random.default_rng(0).random((3, *SHAPE)).astype(np.float32)
    labels = apply(probs, PostprocessSettings(), spacing=(1.0, 1.0, 1.0))
    np.testing.assert_array_equal(labels, regions_to_labels(probs > 0.5))
    assert labels.dtype == np.uint8 and set(np.unique(labels)) <= {0, 1, 2, 4}


def test_thresholds_are_per_region():
    probs = np.zeros((3, *SHAPE), np.float32)
    probs[:, 2:8, 2:8, 2:6] = np.array([0.6, 0.4, 0.35]).reshape(3, 1, 1, 1)
    spacing = (1.0, 1.0, 1.0)
    plain = apply(probs, PostprocessSettings.uniform(0.5), spacing)
    assert set(np.unique(plain)) == {0, 2}
    tuned = apply(probs, PostprocessSettings(thresholds={"WT": 0.5, "TC": 0.3, "ET": 0.3}),
                  spacing)
    assert set(np.unique(tuned)) == {0, 4}
    core = apply(probs, PostprocessSettings(thresholds={"WT": 0.5, "TC": 0.3, "ET": 0.4}),
                 spacing)
    assert set(np.unique(core)) == {0, 1}


def test_regions_are_nested_et_in_tc_in_wt():
    # ET without TC, TC without WT: neither survives; ET inside TC inside WT does
    probs = probs_of(wt=[box(0, 6, 0, 6, 0, 4)],
                     tc=[box(2, 4, 2, 4, 0, 4), box(8, 10, 8, 10, 0, 4)],
                     et=[box(2, 3, 2, 3, 0, 4), box(5, 6, 5, 6, 0, 4)])
    labels = apply(probs, PostprocessSettings(), spacing=(1.0, 1.0, 1.0))
    assert (labels[2:3, 2:3, 0:4] == 4).all()
    assert (labels[3, 3, 0:4] == 1).all()
    assert (labels[5, 5, 0:4] == 2).all(), "ET outside TC is edema"
    assert not labels[8:10, 8:10].any(), "TC outside WT is dropped"


def test_component_volume_uses_the_anisotropic_spacing():
    probs = probs_of(wt=[box(1, 3, 1, 3, 1, 2), box(8, 11, 8, 11, 4, 7)])  # 4 and 27 voxels
    spacing = (1.0, 1.0, 3.0)  # 3 mm3 per voxel: 12 mm3 and 81 mm3
    kept = apply(probs, PostprocessSettings(min_component_mm3=12.0), spacing)
    assert np.count_nonzero(kept) == 31, "a component of exactly the volume is kept"
    small_gone = apply(probs, PostprocessSettings(min_component_mm3=12.5), spacing)
    assert np.count_nonzero(small_gone) == 27
    assert not small_gone[1:3, 1:3].any()
    # the same voxels at 1 mm isotropic are only 4 mm3 and 27 mm3
    assert np.count_nonzero(apply(probs, PostprocessSettings(min_component_mm3=12.0),
                                  (1.0, 1.0, 1.0))) == 27


def test_components_are_26_connected():
    mask = np.zeros(SHAPE, bool)
    mask[2, 2, 2] = mask[3, 3, 3] = True  # touching by a corner only: one component of 2
    np.testing.assert_array_equal(remove_small_components(mask, 2.0, 1.0), mask)
    assert not remove_small_components(mask, 2.5, 1.0).any()


def test_removed_components_take_the_inner_regions_with_them():
    wt_blob, tc_blob = box(0, 2, 0, 2, 0, 2), box(4, 6, 4, 6, 0, 2)
    et_blob = box(8, 10, 8, 10, 0, 2)
    big = box(4, 12, 4, 12, 2, 8)
    probs = probs_of(wt=[wt_blob, big, tc_blob, et_blob], tc=[wt_blob, tc_blob, et_blob, big],
                     et=[wt_blob, et_blob])
    spacing = (1.0, 1.0, 1.0)
    before = apply(probs, PostprocessSettings(), spacing)
    assert (before[wt_blob] == 4).all() and (before[et_blob] == 4).all()
    settings = PostprocessSettings(min_component_mm3={"WT": 10.0, "TC": 0.0, "ET": 10.0})
    after = apply(probs, settings, spacing)
    assert not after[wt_blob].any(), "a removed WT blob takes its core and ET with it"
    assert (after[et_blob] == 1).all(), "a removed ET blob becomes necrosis (still TC)"
    tc_only = apply(probs_of(wt=[big], tc=[box(4, 6, 4, 6, 2, 4), box(8, 12, 8, 12, 4, 8)]),
                    PostprocessSettings(min_component_mm3={"WT": 0, "TC": 10.0, "ET": 0}),
                    spacing)
    assert (tc_only[4:6, 4:6, 2:4] == 2).all(), "a removed TC blob becomes edema"
    assert (tc_only[8:12, 8:12, 4:8] == 1).all()


def test_tiny_enhancing_tumour_becomes_necrosis():
    core = box(2, 8, 2, 8, 2, 6)
    probs = probs_of(wt=[core], tc=[core], et=[box(3, 5, 3, 5, 3, 5)])  # 8 voxels of ET
    spacing = (1.0, 1.0, 2.0)  # 16 mm3 of ET
    kept = apply(probs, PostprocessSettings(et_to_necrosis_mm3=16.0), spacing)
    assert np.count_nonzero(kept == 4) == 8, "exactly the volume: kept"
    replaced = apply(probs, PostprocessSettings(et_to_necrosis_mm3=16.5), spacing)
    assert not (replaced == 4).any()
    assert np.count_nonzero(replaced == 1) == np.count_nonzero(kept == 1) + 8
    np.testing.assert_array_equal(replaced > 0, kept > 0)


def test_apply_refuses_bad_shapes_and_spacings():
    with pytest.raises(BrainsegError, match=r"\(3, x, y, z\)"):
        apply(np.zeros((2, *SHAPE)), PostprocessSettings(), (1.0, 1.0, 1.0))
    with pytest.raises(BrainsegError, match="spacing"):
        apply(np.zeros((3, *SHAPE)), PostprocessSettings(), (1.0, 0.0, 1.0))


def test_settings_json_round_trip(tmp_path):
    settings = PostprocessSettings(thresholds={"WT": 0.4, "TC": 0.6, "ET": 0.3},
                                   min_component_mm3={"WT": 500.0, "TC": 0.0, "ET": 20.0},
                                   et_to_necrosis_mm3=300.0, flip_tta=True)
    path = tmp_path / "postprocess.json"
    write_settings(path, settings)
    assert read_settings(path) == settings
    assert json.loads(path.read_text())["min_component_mm3"] == {"WT": 500.0, "TC": 0.0,
                                                                  "ET": 20.0}
    assert PostprocessSettings(min_component_mm3=50).min_component_mm3 == {
        "WT": 50.0, "TC": 50.0, "ET": 50.0}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("{not json", "not a valid JSON file"),
        ("[0.5]", "expected a JSON object"),
        ('{"thresholds": 0.5}', "missing keys"),
        ('{"thresholds": 0.5, "min_component_mm3": 0, "et_to_necrosis_mm3": 0, "flip_tta": false,'
         ' "extra": 1}', "unknown keys \\['extra'\\]"),
        ('{"thresholds": {"WT": 0.5, "TC": 1.5, "ET": 0.5}, "min_component_mm3": 0,'
         ' "et_to_necrosis_mm3": 0, "flip_tta": false}', "strictly between 0 and 1"),
        ('{"thresholds": {"WT": 0.5}, "min_component_mm3": 0, "et_to_necrosis_mm3": 0,'
         ' "flip_tta": false}', "keys WT, TC, ET"),
        ('{"thresholds": 0.5, "min_component_mm3": -1, "et_to_necrosis_mm3": 0,'
         ' "flip_tta": false}', "must be >= 0"),
        ('{"thresholds": 0.5, "min_component_mm3": 0, "et_to_necrosis_mm3": true,'
         ' "flip_tta": false}', "et_to_necrosis_mm3"),
        ('{"thresholds": 0.5, "min_component_mm3": 0, "et_to_necrosis_mm3": 0,'
         ' "flip_tta": "yes"}', "flip_tta"),
    ],
)
def test_bad_settings_file_names_the_file(tmp_path, content, why):
    path = tmp_path / "postprocess.json"
    path.write_text(content)
    with pytest.raises(BrainsegError, match=f"{path}: .*{why}"):
        read_settings(path)


def test_missing_settings_file_names_the_file(tmp_path):
    with pytest.raises(BrainsegError, match=f"{tmp_path / 'nope.json'}: .*not found"):
        read_settings(tmp_path / "nope.json")
