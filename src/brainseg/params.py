"""Load and validate params.yaml against the schema that the Snakefile uses too."""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from brainseg.errors import BrainsegError

SCHEMA_PATH = Path(__file__).parent / "schemas" / "params.schema.yaml"


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """Return the JSON schema of params.yaml (the file in workflow/schemas/)."""
    with SCHEMA_PATH.open() as fh:
        return yaml.safe_load(fh)


def _key_of(error: jsonschema.ValidationError) -> str:
    path = ".".join(str(p) for p in error.absolute_path)
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
    validator = jsonschema.Draft202012Validator(load_schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        raise BrainsegError(f"{source}: invalid key '{_key_of(err)}': {err.message}")
    check_combinations(params, source)
    return params


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


def check_combinations(params: Mapping[str, Any], source: str = "params") -> None:
    """Checks that span several keys, which the schema cannot express.

    Raises:
        BrainsegError: naming the key, for a [low, high] range with low > high or a
            combination of values that cannot work.
    """
    for key, (low, high) in _ranges(params, load_schema()):
        if low > high:
            raise BrainsegError(
                f"{source}: invalid key '{key}': range [{low}, {high}] has low > high"
            )
    model = params["train"]["model"]
    if model["deep_supervision"] >= model["depth"]:
        raise BrainsegError(
            f"{source}: invalid key 'train.model.deep_supervision': {model['deep_supervision']} "
            f"supervised decoder levels need a depth above it (train.model.depth is "
            f"{model['depth']})"
        )
    split = params["split"]
    if split["folds"] < 2 and split["test_fraction"] == 0:
        raise BrainsegError(
            f"{source}: invalid key 'split.test_fraction': 0 (no test subjects) needs "
            "cross-validation (split.folds >= 2), whose held-out folds are then the evaluation"
        )


def load_params(path: str | Path) -> dict[str, Any]:
    """Read and validate a params.yaml file.

    Raises:
        BrainsegError: if the file is missing, is not YAML, or fails the schema.
    """
    path = Path(path)
    try:
        with path.open() as fh:
            params = yaml.safe_load(fh)
    except FileNotFoundError as exc:
        raise BrainsegError(f"{path}: params file not found") from exc
    except yaml.YAMLError as exc:
        raise BrainsegError(f"{path}: not valid YAML: {exc}") from exc
    return validate_params(params, source=str(path))


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
    from brainseg.io.atomic import write_text

    params = load_params(base)
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep:
            raise BrainsegError(f"--set {item}: expected KEY=VALUE (e.g. download.path=data/in)")
        set_key(params, key.strip(), yaml.safe_load(text), source=f"--set {item}")
    validate_params(params, source=f"{base} with --set")
    header = (f"# Made by `brainseg params` from {Path(base).as_posix()}"
              + "".join(f" --set {a}" for a in assignments) + "\n")
    text = header + yaml.safe_dump(params, sort_keys=False, width=100)
    if out is not None:
        write_text(out, text)
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
