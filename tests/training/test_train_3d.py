"""A 3D U-Net trained in-process on a small store: determinism, the checkpoint, params."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.params import validate_params
from tests.training.test_train import train, weights


@pytest.fixture
def params_3d(train_params):
    train_params["train"].update(epochs=2, batch_size=2, slices_per_epoch=4,
                                 patch_size=[8, 16, 16])
    train_params["train"]["model"].update(dims=3, deep_supervision=1)
    train_params["train"]["augment"]["elastic"]["p"] = 0.0
    for key in ("flip", "affine", "gamma", "brightness_contrast", "noise", "blur"):
        train_params["train"]["augment"][key]["p"] = 0.5
    return validate_params(train_params)


def test_two_3d_trainings_give_bit_identical_weights(store, params_3d):
    train(store, params_3d)
    first = weights(store / "models" / "model.pt")
    history = pd.read_csv(store / "reports" / "history.csv")
    ckpt = torch.load(store / "models" / "model.pt", weights_only=True)
    assert ckpt["config"]["model"]["dims"] == 3 and first["head.weight"].dim() == 5
    assert ckpt["config"]["patch"] == {"size": [8, 16, 16], "overlap": 0.5}
    assert list(history["epoch"]) == [1, 2] and history["val_dice_mean"].notna().all()
    (store / "models" / "model.pt").unlink()
    train(store, copy.deepcopy(params_3d))
    second = weights(store / "models" / "model.pt")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert history.equals(pd.read_csv(store / "reports" / "history.csv"))


@pytest.mark.parametrize(("key", "value", "match"), [
    ("context_slices", 1, r"train\.model\.context_slices.*dims 3"),
    ("elastic", 0.3, r"train\.augment\.elastic\.p.*dims 3"),
])
def test_what_does_not_apply_to_3d_is_refused(params_3d, key, value, match):
    params = copy.deepcopy(params_3d)
    if key == "elastic":
        params["train"]["augment"]["elastic"]["p"] = value
    else:
        params["train"]["model"][key] = value
    with pytest.raises(BrainsegError, match=match):
        validate_params(params)


def test_a_2d_checkpoint_config_stores_no_dims(train_params):
    from brainseg.training.train import model_config

    params_2d = validate_params(copy.deepcopy(train_params))
    assert params_2d["train"]["model"]["dims"] == 2
    plain = model_config(params_2d)
    assert "dims" not in plain["model"] and "patch" not in plain  # the bytes of before 3D
    train_params["train"]["model"]["dims"] = 3
    train_params["train"]["augment"]["elastic"]["p"] = 0.0
    config = model_config(validate_params(train_params))
    assert config["model"]["dims"] == 3 and config["patch"]["size"] == [64, 64, 64]


def test_an_interrupted_3d_training_resumes_to_the_same_weights(store, params_3d, monkeypatch):
    """Stopped after its first epoch's state was saved (as by Ctrl-C), then `--resume`d:
    the weights and history of a training that was never stopped."""
    import brainseg.training.train as train_module

    params_3d["train"].update(epochs=3, val_every=1)
    train(store, copy.deepcopy(params_3d))
    whole = weights(store / "models" / "model.pt")
    history = pd.read_csv(store / "reports" / "history.csv")
    (store / "models" / "model.pt").unlink()

    real_save = train_module.save_state

    def save_then_stop(path, **state):
        real_save(path, **state)
        if state["epoch"] == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(train_module, "save_state", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(store, copy.deepcopy(params_3d))
    assert not (store / "models" / "model.pt").exists()
    assert torch.load(store / "models" / "train_state.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train_module, "save_state", real_save)
    train(store, copy.deepcopy(params_3d), resume=True)
    resumed = weights(store / "models" / "model.pt")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert history.equals(pd.read_csv(store / "reports" / "history.csv"))
    assert not (store / "models" / "train_state.pt").exists()
