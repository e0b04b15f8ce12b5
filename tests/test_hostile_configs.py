"""Hostile checkpoints and params files: each refused with one message naming the file.

The rows of the "Hostile checkpoints and params" table in docs/data.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import load_checkpoint
from brainseg.params import load_params
from tests.conftest import REPO
from tests.evaluation.test_inference import save_checkpoint


def edit_checkpoint(path: Path, edit) -> None:
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, path)


def set_model(**fields):
    return lambda c: c["config"]["model"].update(fields)


CHECKPOINTS = {
    "not a torch file": (lambda p: p.write_text("model weights, honestly\n"),
                         "cannot load checkpoint (corrupt or not a torch file?)"),
    # any object besides tensors and plain containers: weights_only=True will not unpickle it
    "extra pickled object": (lambda p: edit_checkpoint(
        p, lambda c: c.update(extra=argparse.Namespace(a=1))),
        "the checkpoint holds a pickled argparse.Namespace, not only weights"),
    "unknown architecture": (lambda p: edit_checkpoint(p, set_model(arch="transformer")),
                             "cannot build the model of its config"),
    "unknown norm": (lambda p: edit_checkpoint(p, set_model(norm="layer")),
                     "cannot build the model of its config"),
    "weights of another depth": (lambda p: edit_checkpoint(p, set_model(depth=3)),
                                 "weights do not match the architecture of its config"),
    "config without preprocessing": (lambda p: edit_checkpoint(
        p, lambda c: c["config"].pop("normalize")), "model config lacks normalize"),
    "config that is a list": (lambda p: edit_checkpoint(p, lambda c: c.update(config=[1])),
                              "model config is not a mapping"),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINTS))
def test_a_hostile_checkpoint_is_refused_naming_it(case, tmp_path):
    path = tmp_path / "m.pt"
    save_checkpoint(path)
    damage, message = CHECKPOINTS[case]
    damage(path)
    with pytest.raises(BrainsegError) as caught:
        load_checkpoint(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


def test_an_extra_pickled_object_never_runs(tmp_path):
    """A checkpoint whose pickle would run code when unpickled: refused, not run."""
    path, marker = tmp_path / "m.pt", tmp_path / "ran"
    save_checkpoint(path)

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))

    edit_checkpoint(path, lambda c: c.update(payload=Payload()))
    with pytest.raises(BrainsegError, match=r"holds a pickled .*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


BOMB = """\
a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]
"""


def smoke_params() -> dict:
    return yaml.safe_load((REPO / "tests" / "params-smoke.yaml").read_text())


def with_duplicate_key(text: str) -> str:
    return text.replace("train:\n", "train:\n  epochs: 3\n", 1)


PARAMS_TEXTS = {
    "anchors and aliases (billion laughs)": (lambda: BOMB, "line 1, column 4: not valid YAML: "
                                             "the value anchored here (&name) is used again"),
    "duplicate key": (lambda: with_duplicate_key(
        (REPO / "tests" / "params-smoke.yaml").read_text()), "given twice (first on line"),
    "not YAML": (lambda: "train: [1, 2\n", "line 2, column 1: not valid YAML"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_TEXTS))
def test_a_hostile_params_file_is_refused_on_one_line(case, tmp_path):
    text, message = PARAMS_TEXTS[case]
    path = tmp_path / "params.yaml"
    path.write_text(text())
    with pytest.raises(BrainsegError) as caught:
        load_params(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def _at(keys: tuple[str, ...], value):
    def edit(params):
        node = params
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
        return params
    return edit


# a wrong type at every level of the params tree, and the key each message names
WRONG_TYPES = [
    (lambda p: ["not", "a", "mapping"], "<root>"),
    (_at(("train",), "fast"), "train"),
    (_at(("train", "model"), [4, 2]), "train.model"),
    (_at(("train", "model", "depth"), "three"), "train.model.depth"),
    (_at(("train", "optimizer", "lr"), "1e-3x"), "train.optimizer.lr"),
    (_at(("split", "fractions"), {"train": 0.7}), "split.fractions"),
]


@pytest.mark.parametrize(("edit", "key"), WRONG_TYPES, ids=[k for _, k in WRONG_TYPES])
def test_a_wrong_type_at_any_level_names_its_key(edit, key, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(edit(smoke_params())))
    with pytest.raises(BrainsegError) as caught:
        load_params(path)
    assert f"'{key}" in str(caught.value), str(caught.value)


def test_the_cli_ends_a_hostile_params_file_with_one_line(tmp_path):
    (tmp_path / "params.yaml").write_text(BOMB)
    result = subprocess.run([sys.executable, "-m", "brainseg", "split", "--params",
                             "params.yaml", "--manifest", "m.csv", "--out", "s.csv"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "aliases are not allowed" in lines[0], lines
    assert not (tmp_path / "s.csv").exists()
