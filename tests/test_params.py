from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from brainseg.data.synthetic import SyntheticConfig
from brainseg.errors import BrainsegError
from brainseg.params import changed_params, default_params, flatten, load_params, validate_params

REPO = Path(__file__).resolve().parents[1]


def test_default_and_smoke_params_are_valid():
    for name in ("params.yaml", "tests/params-smoke.yaml"):
        params = load_params(REPO / name)
        assert set(params) == {"base", "download", "extract", "normalize", "split", "train",
                               "evaluate", "figures", "realism", "postprocess", "anomaly"}


def test_smoke_params_set_every_key_of_the_defaults():
    defaults = flatten(yaml.safe_load((REPO / "params.yaml").read_text()))
    smoke = flatten(yaml.safe_load((REPO / "tests/params-smoke.yaml").read_text()))
    assert set(defaults) == set(smoke)


@pytest.mark.parametrize(
    ("mutate", "key", "why"),
    [
        (lambda p: p["train"].update(bogus=1), "train.bogus", "unexpected"),
        (lambda p: p["train"]["model"].update(widht=3), "train.model.widht", "unexpected"),
        (lambda p: p["train"].update(epochs="ten"), "train.epochs", "not of type 'integer'"),
        (lambda p: p["download"].update(source="ftp"), "download.source", "is not one of"),
        (lambda p: p["extract"].pop("margin"), "extract.margin", "required"),
        (lambda p: p.update(extra={}), "extra", "unexpected"),
    ],
)
def test_bad_params_name_the_key(params, mutate, key, why):
    bad = copy.deepcopy(params)
    mutate(bad)
    with pytest.raises(BrainsegError, match=f"'{key}'.*{why}"):
        validate_params(bad, source="params.yaml")


def test_load_params_errors_name_the_file(tmp_path):
    with pytest.raises(BrainsegError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(BrainsegError, match=f"{broken}: line 2, column 1: not valid YAML"):
        load_params(broken)


def test_flatten_uses_dotted_params_keys():
    assert flatten({"train": {"lr": 0.1, "model": {"depth": 3}}, "base": {"seed": 1}}) == {
        "train.lr": 0.1, "train.model.depth": 3, "base.seed": 1}


def test_cross_key_checks_name_the_key(tmp_path):
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["model"]["deep_supervision"] = params["train"]["model"]["depth"]
    with pytest.raises(BrainsegError, match=r"train\.model\.deep_supervision"):
        validate_params(params)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["augment"]["gamma"]["range"] = [1.5, 0.7]
    with pytest.raises(BrainsegError, match=r"train\.augment\.gamma\.range"):
        validate_params(params)


def test_unknown_augmentation_is_refused():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["augment"]["cutout"] = {"p": 0.5}
    with pytest.raises(BrainsegError, match=r"train\.augment\.cutout"):
        validate_params(params)


def test_a_two_value_list_that_is_not_a_range_is_not_checked_as_one():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["postprocess"]["thresholds"] = [0.6, 0.4]
    assert validate_params(params) is params
    params["normalize"]["clip_percentiles"] = [99.5, 0.5]
    with pytest.raises(BrainsegError, match=r"normalize\.clip_percentiles"):
        validate_params(params)


def test_params_command_writes_a_validated_file_with_changes(tmp_path):
    from brainseg.params import load_params, run_params

    out = tmp_path / "real.yaml"
    run_params(REPO / "workflow" / "presets" / "real.yaml",
               ["download.path=/data/brats", "train.epochs=2"], out)
    params = load_params(out)
    assert params["download"]["path"] == "/data/brats" and params["train"]["epochs"] == 2
    assert params["split"]["folds"] >= 2
    with pytest.raises(BrainsegError, match=r"unknown params key 'train\.epoch'"):
        run_params(REPO / "params.yaml", ["train.epoch=2"], None)
    with pytest.raises(BrainsegError, match=r"invalid key 'train\.epochs'"):
        run_params(REPO / "params.yaml", ["train.epochs=0"], None)
    with pytest.raises(BrainsegError, match="expected KEY=VALUE"):
        run_params(REPO / "params.yaml", ["train.epochs"], None)


def test_no_test_set_needs_cross_validation(params):
    params["split"]["test_fraction"] = 0.0
    with pytest.raises(BrainsegError, match=r"split\.test_fraction"):
        validate_params(params)
    params["split"].update(folds=3, fold_ids=[0, 1, 2])
    validate_params(params)


def test_fold_ids_must_list_the_folds(params):
    from brainseg.params import run_params

    params["split"].update(folds=3, fold_ids=[0, 1])
    with pytest.raises(BrainsegError, match=r"split\.fold_ids': \[0, 1\] should be \[0, 1, 2\]"):
        validate_params(params)
    params["split"].update(folds=0, fold_ids=[0, 1, 2])
    with pytest.raises(BrainsegError, match=r"should be \[\]"):
        validate_params(params)
    preset = REPO / "workflow" / "presets" / "real.yaml"
    assert yaml.safe_load(run_params(preset, ["split.folds=3"], None))["split"]["fold_ids"] == \
        [0, 1, 2]
    with pytest.raises(BrainsegError, match=r"split\.fold_ids"):
        run_params(preset, ["split.folds=3", "split.fold_ids=[0, 1, 2, 3, 4]"], None)


def test_params_yaml_writes_out_exactly_the_schema_defaults():
    """The schema holds each key's default; the repository's params.yaml repeats them all."""
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert default_params() == shipped, (
        "params.yaml and the `default:` entries of workflow/schemas/params.schema.yaml differ: "
        f"{changed_params(shipped)}")


def test_changed_params_lists_only_what_differs(params):
    defaults = default_params()
    assert changed_params(defaults) == {}
    defaults["train"]["optimizer"]["lr"] = 0.0005
    defaults["download"]["synthetic"]["tumor_radius_mm"] = [13, 38]  # == [13.0, 38.0]
    assert changed_params(defaults) == {"train.optimizer.lr": 0.0005}
    assert changed_params(params)["download.n_subjects"] == 6


def test_the_generators_whole_range_is_valid(params):
    """The schema's synthetic ranges are the generator's: its ends are accepted."""
    synthetic = params["download"]["synthetic"]
    synthetic.update(bias_field=0.99, intensity_jitter=0.9, tumor_radius_mm=[1.0, 45.0],
                     core_fraction=[0.01, 0.99], ventricle_scale=[0.5, 2.0], n_lesions=[1, 5])
    validate_params(params)
    SyntheticConfig(**synthetic)


def test_anomaly_runs_follow_the_switch(params):
    from brainseg.params import run_params

    params["anomaly"]["enabled"] = True
    with pytest.raises(BrainsegError, match=r"anomaly\.runs': \[\] should be \['autoencoder'\]"):
        validate_params(params)
    params["anomaly"]["runs"] = ["autoencoder"]
    validate_params(params)
    params["anomaly"].update(levels=3, patch_size=[32, 20, 32])  # sides divisible by 8 needed
    with pytest.raises(BrainsegError, match=r"anomaly\.patch_size.*2\^levels = 8"):
        validate_params(params)
    on = yaml.safe_load(run_params(REPO / "params.yaml", ["anomaly.enabled=true"], None))
    assert on["anomaly"]["runs"] == ["autoencoder"]
    assert load_params(REPO / "params.yaml")["anomaly"] == {**on["anomaly"], "enabled": False,
                                                            "runs": []}
