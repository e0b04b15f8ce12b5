"""Load and validate params.yaml against the schema that the Snakefile uses too.

The schema is the one place where a key's type, range and default live; the
repository's params.yaml writes every default out (a test keeps the two equal).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from brainseg.errors import BrainsegError

if TYPE_CHECKING:  # imported where params are validated: `brainseg predict` never pays for it
    import jsonschema

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"


# libyaml's loader when PyYAML has it (10x faster than the pure-Python SafeLoader on the
# schema; the same safe subset of YAML, so the same dicts).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_LOADER):  # type: ignore[misc, valid-type]
    """The safe loader, refusing two things a params file never needs:

    - a key twice in one mapping (YAML keeps the last one, silently);
    - an alias (`*name`): a few lines of anchors and aliases can stand for billions of
      values ("billion laughs"), which every reader of the dict (schema validation,
      MLflow's params, `flatten`) would walk.

    Both raise yaml.constructor.ConstructorError (a YAMLError) with the line and column.
    """

    def construct_object(self, node, deep=False):
        if node in self.constructed_objects or node in self.recursive_objects:
            raise yaml.constructor.ConstructorError(
                None, None, "the value anchored here (&name) is used again by an alias "
                "(*name): aliases are not allowed in a params file (write the value out)",
                node.start_mark)
        return super().construct_object(node, deep)

    def construct_mapping(self, node, deep=False):
        seen: dict[tuple[str, str], yaml.Mark] = {}
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                key = (key_node.tag, key_node.value)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key '{key_node.value}' given twice (first on line "
                        f"{seen[key].line + 1})", key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep)


def read_yaml(stream: Any) -> Any:
    """`yaml.safe_load` with libyaml's parser where available, refusing duplicate keys
    and aliases (`_StrictLoader`)."""
    return yaml.load(stream, Loader=_StrictLoader)


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """Return the JSON schema of params.yaml (the file in workflow/schemas/)."""
    with SCHEMA_PATH.open() as fh:
        return read_yaml(fh)


def _key_of(error: jsonschema.ValidationError, prefix: str = "") -> str:
    path = ".".join([*filter(None, [prefix]), *(str(p) for p in error.absolute_path)])
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return ".".join(filter(None, [path, extra[0] if extra else ""]))
    if error.validator == "required":
        missing = [r for r in error.validator_value if r not in error.instance]
        return ".".join(filter(None, [path, missing[0] if missing else ""]))
    return path or "<root>"


def validate_params(params: Any, source: str = "params") -> dict[str, Any]:
    """Validate a params mapping against the schema.

    Args:
        params: the parsed YAML document.
        source: file name used in the error message.

    Returns:
        The same mapping, unchanged.

    Raises:
        BrainsegError: naming the first offending key and what is wrong with it.
    """
    _check_schema(params, load_schema(), source)
    check_combinations(params, source)
    return params


def _check_schema(values: Any, schema: Mapping[str, Any], source: str, prefix: str = "") -> None:
    """Raise on the first value of `values` (at dotted `prefix`) that `schema` refuses."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema()).evolve(schema=schema)
    errors = sorted(validator.iter_errors(values), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        raise BrainsegError(f"{source}: invalid key '{_key_of(err, prefix)}': {err.message}")


def validate_section(values: Mapping[str, Any], key: str, source: str) -> None:
    """Validate one section of the params (dotted `key`, e.g. `download.synthetic`).

    For code that takes a section's values from elsewhere than a params file (the
    synthetic generator's config): the schema stays the one place where ranges live.

    Args:
        values: the section, lists for [low, high] pairs.
        key: where the section sits in params.yaml.
        source: who passed the values, for the message.

    Raises:
        BrainsegError: naming the first offending key (`download.synthetic.noise`) and
            what is wrong with it, or a [low, high] range with low > high.
    """
    schema: Mapping[str, Any] = load_schema()
    for part in key.split("."):
        schema = schema["properties"][part]
    _check_schema(values, schema, source, key)
    _check_ranges(values, schema, source, f"{key}.")


def _is_range(schema: Mapping[str, Any]) -> bool:
    if "$ref" in schema:
        return schema["$ref"].endswith("_range")
    return schema.get("type") == "array" and schema.get("minItems") == schema.get("maxItems") == 2


def _ranges(node: Any, schema: Mapping[str, Any], prefix: str = ""):
    """(dotted key, value) of every [low, high] pair the schema declares under `node`."""
    if isinstance(node, Mapping):
        props = schema.get("properties", {})
        for key, value in node.items():
            if key in props:
                yield from _ranges(value, props[key], f"{prefix}{key}.")
    elif _is_range(schema) and isinstance(node, list) and len(node) == 2:
        yield prefix[:-1], node


def _check_ranges(values: Any, schema: Mapping[str, Any], source: str, prefix: str = "") -> None:
    for key, (low, high) in _ranges(values, schema, prefix):
        if low > high:
            raise BrainsegError(
                f"{source}: invalid key '{key}': range [{low}, {high}] has low > high"
            )


def check_combinations(params: Mapping[str, Any], source: str = "params") -> None:
    """Checks that span several keys, which the schema cannot express.

    Raises:
        BrainsegError: naming the key, for a [low, high] range with low > high or a
            combination of values that cannot work.
    """
    _check_ranges(params, load_schema(), source)
    model = params["train"]["model"]
    if model["deep_supervision"] >= model["depth"]:
        raise BrainsegError(
            f"{source}: invalid key 'train.model.deep_supervision': {model['deep_supervision']} "
            f"supervised decoder levels need a depth above it (train.model.depth is "
            f"{model['depth']})"
        )
    if model["dims"] == 3 and model["context_slices"]:
        raise BrainsegError(
            f"{source}: invalid key 'train.model.context_slices': {model['context_slices']} "
            "does not apply to train.model.dims 3 (a 3D U-Net sees the neighbouring slices "
            "itself); set it to 0"
        )
    if model["dims"] == 3 and params["train"]["augment"]["elastic"]["p"] > 0:
        raise BrainsegError(
            f"{source}: invalid key 'train.augment.elastic.p': "
            f"{params['train']['augment']['elastic']['p']}: elastic deformation is 2D only and "
            "does not apply to train.model.dims 3; set it to 0"
        )
    split = params["split"]
    folds = list(range(split["folds"])) if split["folds"] >= 2 else []
    if split["fold_ids"] != folds:
        raise BrainsegError(
            f"{source}: invalid key 'split.fold_ids': {split['fold_ids']} should be {folds}, the "
            f"folds of split.folds: {split['folds']} (DVC trains one train_fold stage per entry; "
            "`brainseg params --set split.folds=K` sets both)"
        )
    _check_anomaly(params["anomaly"], source)
    if split["folds"] < 2 and split["test_fraction"] == 0:
        raise BrainsegError(
            f"{source}: invalid key 'split.test_fraction': 0 (no test subjects) needs "
            "cross-validation (split.folds >= 2), whose held-out folds are then the evaluation"
        )


ANOMALY_RUNS = ["autoencoder"]  # anomaly.runs when anomaly.enabled (one DVC stage)


def _check_anomaly(anomaly: Mapping[str, Any], source: str) -> None:
    """anomaly.runs follows anomaly.enabled; the patch halves `levels` times."""
    runs = ANOMALY_RUNS if anomaly["enabled"] else []
    if anomaly["runs"] != runs:
        raise BrainsegError(
            f"{source}: invalid key 'anomaly.runs': {anomaly['runs']} should be {runs} with "
            f"anomaly.enabled: {str(anomaly['enabled']).lower()} (DVC runs one anomaly stage "
            "per entry; `brainseg params --set anomaly.enabled=true` sets both)")
    step = 2 ** anomaly["levels"]
    if any(side % step for side in anomaly["patch_size"]):
        raise BrainsegError(
            f"{source}: invalid key 'anomaly.patch_size': {anomaly['patch_size']} is not "
            f"divisible by 2^levels = {step} (anomaly.levels is {anomaly['levels']})")


def _follow(params: dict[str, Any], assignments: list[str]) -> None:
    """The keys `brainseg params --set` keeps in step: split.fold_ids with split.folds,
    anomaly.runs with anomaly.enabled (unless they are set too)."""
    keys = {a.partition("=")[0].strip() for a in assignments}
    folds = params["split"]["folds"]
    if "split.folds" in keys and "split.fold_ids" not in keys and isinstance(folds, int):
        params["split"]["fold_ids"] = list(range(folds)) if folds >= 2 else []
    enabled = params["anomaly"]["enabled"]
    if "anomaly.enabled" in keys and "anomaly.runs" not in keys and isinstance(enabled, bool):
        params["anomaly"]["runs"] = list(ANOMALY_RUNS) if enabled else []


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params.yaml file.

    Raises:
        BrainsegError: if the file is missing, is not YAML, or fails the schema.
    """
    path = Path(path)
    try:
        with path.open() as fh:
            params = read_yaml(fh)
    except FileNotFoundError as exc:
        raise BrainsegError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise BrainsegError(f"{path}: {yaml_problem(exc)}") from exc
    return validate_params(params, source=str(path))


def yaml_problem(exc: yaml.YAMLError) -> str:
    """A YAML error on one line: `line L, column C: not valid YAML: <problem>`."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).replace("\n", " ")
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML: {problem}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested params to dotted keys as in params.yaml (`train.model.depth`)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def set_key(params: dict[str, Any], dotted: str, value: Any, source: str = "--set") -> None:
    """Set `train.optimizer.lr`-style key `dotted` of `params` (an existing key only)."""
    node: Any = params
    *path, last = dotted.split(".")
    for key in path:
        if not isinstance(node, dict) or key not in node:
            raise BrainsegError(f"{source}: unknown params key '{dotted}'")
        node = node[key]
    if not isinstance(node, dict) or last not in node:
        raise BrainsegError(f"{source}: unknown params key '{dotted}'")
    node[last] = value


def run_params(base: str | Path, assignments: list[str], out: str | Path | None) -> str:
    """A params file from `base` with `key=value` assignments (values in YAML), validated.

    Returns:
        The YAML text, also written atomically to `out` when given.
    """
    params = load_params(base)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise BrainsegError(f"--set {item}: expected KEY=VALUE (e.g. download.path=data/in)")
        set_key(params, key.strip(), yaml.safe_load(text), source=f"--set {item}")
    _follow(params, assignments)
    validate_params(params, source=f"{base} with --set")
    header = (f"# Made by `brainseg params` from {Path(base).as_posix()}"
              + "".join(f" --set {a}" for a in assignments) + "\n")
    text = header + yaml.safe_dump(params, sort_keys=False, width=100)
    if out is not None:  # temporary name, then rename (this module sits below brainseg.io)
        out = Path(out)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, out)
    return text


def configure_parser(parser) -> None:
    parser.add_argument("--base", required=True, type=Path,
                        help="params file to start from (params.yaml, workflow/presets/real.yaml)")
    parser.add_argument("--set", dest="assignments", action="append", default=[],
                        metavar="KEY=VALUE", help="change one key (dotted, e.g. "
                        "download.path=/data/brats; the value is read as YAML); repeatable")
    parser.add_argument("--out", type=Path, default=None,
                        help="write the validated params here (default: standard output)")


def main(args) -> None:
    text = run_params(args.base, args.assignments, args.out)
    if args.out is None:
        import sys

        sys.stdout.write(text)


def _defaults(schema: Mapping[str, Any]) -> Any:
    if "properties" in schema:
        return {key: _defaults(sub) for key, sub in schema["properties"].items()}
    return schema["default"]


def default_params() -> dict[str, Any]:
    """The params every key of which has its schema `default` (a fresh copy).

    Raises:
        KeyError: naming a leaf key of the schema that has no default.
    """
    return copy.deepcopy(_default_params())


@lru_cache(maxsize=1)
def _default_params() -> dict[str, Any]:
    return _defaults(load_schema())


def changed_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted keys of `params` whose value differs from the schema default, in file order."""
    defaults = flatten(_default_params())
    missing = object()
    return {key: value for key, value in flatten(params).items()
            if defaults.get(key, missing) != value}
