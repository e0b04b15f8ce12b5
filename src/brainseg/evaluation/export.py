"""`brainseg export`: a trained checkpoint as an ONNX model for ONNX Runtime deployments.

The graph is the checkpoint's network (a fold ensemble: one graph that averages its
members' probabilities, as `Ensemble.forward` does) from normalized slices (with 2.5D
context: the stacked channels of `stack_context`) to logits, with a dynamic batch,
height and width (a 3D network: patches (n, c, d, h, w) of the stacked slices, dynamic
depth too; predict runs its sliding window around the graph). Its `metadata_props` carry
what prediction needs besides the weights: the checkpoint's config as JSON (`brainseg_config`:
preprocessing, output mode, modalities, regions), the brainseg version and the
checkpoint's SHA-256. `brainseg predict --model model.onnx` reads them and runs the
very preprocessing, flip TTA and post-processing of a checkpoint around it.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from brainseg import __version__
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import (
    CONFIG_ATTRIBUTE,
    input_channels,
    load_checkpoint,
    model_dims,
)
from brainseg.evaluation.onnx_graph import (
    PRECISIONS,
    OnnxNetwork,
    convert_precision,
    export_graph,
)
from brainseg.evaluation.onnx_runtime import open_session
from brainseg.io.atomic import write_bytes
from brainseg.io.hashing import file_digests
from brainseg.runtime import set_threads
from brainseg.tracking import add_tracking_argument

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx",)
VERSION_KEY = "brainseg_version"
SHA256_KEY = "checkpoint_sha256"
PRECISION_KEY = "brainseg_precision"
TOLERANCE = 1e-3  # largest |logit difference| / (1 + |logit|) of the fp32 graph to torch


def model_metadata(config: dict[str, Any], checkpoint: Path) -> dict[str, str]:
    """The `metadata_props` of an exported model: config (JSON), version, checkpoint SHA-256."""
    return {CONFIG_ATTRIBUTE: json.dumps(config, sort_keys=True),
            VERSION_KEY: __version__,
            SHA256_KEY: file_digests(checkpoint, "sha256")[0]}


def example_input(config: dict[str, Any], n: int = 2, shrink: int = 0,
                  seed: int = 0) -> torch.Tensor:
    """Random normalized slices (n, c, s - shrink, s - shrink) of the model's c input
    channels (`input_channels`: modalities, times 2k + 1 with 2.5D context k) at its slice
    size s (`extract.image_size`); for a 3D model, patches (n, c, d, h, w) of its patch size
    (`patch.size`), each side less `shrink`."""
    if model_dims(config) == 3:
        spatial = tuple(v - shrink for v in config["patch"]["size"])
    else:
        size = config["extract"]["image_size"] - shrink
        spatial = (size, size)
    channels = input_channels(config)
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, *spatial, generator=generator)


def graph_difference(model: torch.nn.Module, graph: OnnxNetwork, config: dict[str, Any]
                     ) -> float:
    """The largest relative logit difference |graph - model| / (1 + |model|) on random slices
    of another batch size, of the trained and of an odd slice size (the dynamic dimensions).

    Raises:
        BrainsegError: the graph gives logits of another shape, or not finite ones.
    """
    worst = 0.0
    for n, shrink in ((3, 0), (1, 5)):
        x = example_input(config, n, shrink, seed=n)
        with torch.no_grad():
            want = model(x).float()
        got = graph(x)
        if got.shape != want.shape or not bool(torch.isfinite(got).all()):
            raise BrainsegError(f"the exported graph gives logits {tuple(got.shape)} (finite: "
                                f"{bool(torch.isfinite(got).all())}) for slices "
                                f"{tuple(x.shape)}, torch {tuple(want.shape)}")
        worst = max(worst, float(((got - want).abs() / (1 + want.abs())).max()))
    return worst


def run_export(*, model: Path, out: Path, fmt: str = "onnx", precision: str = "fp32",
               run_info: Path | None = None, tracking_uri: str = "") -> Path:
    """Export a `train` checkpoint to `out`, checked against torch, written atomically.

    The fp32 graph must give the torch logits within `TOLERANCE`; a reduced precision is
    converted from it, and its difference to torch is logged.

    Args:
        model: the checkpoint written by `brainseg train` (a U-Net or a fold ensemble).
        out: the model file to write (`models/model.onnx`).
        fmt: the format; only `onnx`.
        precision: fp32, fp16 or int8 (see `convert_precision`).
        run_info: the JSON written by `train`; the file is logged as an artifact (`onnx/`)
            of that MLflow run.
        tracking_uri: the MLflow tracking URI (used with `run_info`).

    Returns:
        `out`.

    Raises:
        BrainsegError: unknown format or precision, `model` is not a brainseg checkpoint,
            or the graph does not reproduce the torch model (nothing is written then).
    """
    if fmt not in FORMATS:
        raise BrainsegError(f"--format {fmt}: unknown format (supported: {', '.join(FORMATS)})")
    if precision not in PRECISIONS:
        raise BrainsegError(f"--precision {precision}: unknown precision "
                            f"(supported: {', '.join(PRECISIONS)})")
    net, config = load_checkpoint(model)
    net = net.to(memory_format=torch.contiguous_format)
    metadata = {**model_metadata(config, model), PRECISION_KEY: precision}
    data = export_graph(net, example_input(config), metadata)
    threads = torch.get_num_threads()
    worst = graph_difference(net, OnnxNetwork(open_session(data, threads)), config)
    if worst > TOLERANCE:
        raise BrainsegError(f"{model}: the exported graph differs from the torch model by "
                            f"{worst:.2g} (relative logits, tolerance {TOLERANCE:g})")
    if precision != "fp32":
        data = convert_precision(data, precision, metadata)
        worst = graph_difference(net, OnnxNetwork(open_session(data, threads)), config)
    write_bytes(out, data)
    log.info("exported %s to %s (%s, %.1f MB; largest relative logit difference to torch "
             "%.2g)", model, out, precision, len(data) / 1e6, worst)
    if run_info is not None:
        from brainseg.tracking import log_to_run

        log_to_run(tracking_uri, run_info, fmt, [out])
    return out


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, type=Path,
                        help="checkpoint written by `brainseg train` (models/model.pt): a U-Net "
                        "or the ensemble of a cross-validation's fold models, exported as one "
                        "graph that averages them")
    parser.add_argument("--format", default="onnx", dest="fmt", metavar="FORMAT",
                        help=f"model format to write: {' | '.join(FORMATS)} (default onnx: "
                        "normalized slices (n, c, h, w) to logits, dynamic n, h, w; the "
                        "checkpoint's config, brainseg version and checkpoint SHA-256 in its "
                        "metadata), for `brainseg predict --model` or ONNX Runtime")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="numbers of the graph: fp32 (default; checked against torch), fp16 "
                        "(half the size) or int8 (dynamic quantization of the weights, a third "
                        "of the size); each within 0.005 Dice of fp32 on the real "
                        "cross-validation, see docs/predict.md")
    parser.add_argument("--out", required=True, type=Path,
                        help="the file to write (models/model.onnx), replaced atomically")
    parser.add_argument("--run-info", type=Path, default=None,
                        help="JSON written by train (models/mlflow_run.json): the file is also "
                        "logged as an artifact of that MLflow run")
    add_tracking_argument(parser)
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads of torch and ONNX Runtime while exporting and "
                        "checking the graph (0: their default; speed, not results)")


def main(args: argparse.Namespace) -> None:
    from brainseg.tracking import tracking_uri

    set_threads(args.threads)
    uri = tracking_uri(args.tracking_uri) if args.run_info is not None else ""
    run_export(model=args.model, out=args.out, fmt=args.fmt, precision=args.precision,
               run_info=args.run_info, tracking_uri=uri)

