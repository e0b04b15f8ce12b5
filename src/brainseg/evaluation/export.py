"""`brainseg export`: a trained checkpoint as an ONNX model for ONNX Runtime deployments.

The graph is the checkpoint's network (a fold ensemble: one graph that averages its
members' probabilities, as `Ensemble.forward` does) from normalized slices to logits,
with a dynamic batch, height and width. Its `metadata_props` carry what prediction
needs besides the weights: the checkpoint's config as JSON (`brainseg_config`:
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
from brainseg.evaluation.inference import CONFIG_ATTRIBUTE, load_checkpoint, model_modalities
from brainseg.evaluation.onnx_graph import OnnxNetwork, export_graph, open_session
from brainseg.io.atomic import write_bytes
from brainseg.io.hashing import file_digests
from brainseg.runtime import set_threads
from brainseg.tracking import add_tracking_argument

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("onnx",)
VERSION_KEY = "brainseg_version"
SHA256_KEY = "checkpoint_sha256"
TOLERANCE = 1e-3  # largest |logit difference| / (1 + |logit|) between the graph and torch


def model_metadata(config: dict[str, Any], checkpoint: Path) -> dict[str, str]:
    """The `metadata_props` of an exported model: config (JSON), version, checkpoint SHA-256."""
    return {CONFIG_ATTRIBUTE: json.dumps(config, sort_keys=True),
            VERSION_KEY: __version__,
            SHA256_KEY: file_digests(checkpoint, "sha256")[0]}


def example_input(config: dict[str, Any], n: int = 2, shrink: int = 0,
                  seed: int = 0) -> torch.Tensor:
    """Random normalized slices (n, c, s - shrink, s - shrink) of the model's c modalities
    at its slice size s (`extract.image_size`)."""
    size = config["extract"]["image_size"] - shrink
    channels = len(model_modalities(config))
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, channels, size, size, generator=generator)


def check_graph(model: torch.nn.Module, graph: OnnxNetwork, config: dict[str, Any]) -> float:
    """The largest relative logit difference between `graph` and `model` on random slices of
    another batch size and of the trained and an odd slice size (the dynamic dimensions).

    Raises:
        BrainsegError: the difference exceeds `TOLERANCE`.
    """
    worst = 0.0
    for n, shrink in ((3, 0), (1, 5)):
        x = example_input(config, n, shrink, seed=n)
        with torch.no_grad():
            want = model(x).float()
        got = graph(x)
        if got.shape != want.shape:
            raise BrainsegError(f"the exported graph gives logits {tuple(got.shape)} for slices "
                                f"{tuple(x.shape)}, torch {tuple(want.shape)}")
        worst = max(worst, float(((got - want).abs() / (1 + want.abs())).max()))
    if worst > TOLERANCE:
        raise BrainsegError(f"the exported graph differs from the torch model by {worst:.2g} "
                            f"(relative logits, tolerance {TOLERANCE:g})")
    return worst


def run_export(*, model: Path, out: Path, fmt: str = "onnx", run_info: Path | None = None,
               tracking_uri: str = "") -> Path:
    """Export a `train` checkpoint to `out`, checked against torch, written atomically.

    Args:
        model: the checkpoint written by `brainseg train` (a U-Net or a fold ensemble).
        out: the model file to write (`models/model.onnx`).
        fmt: the format; only `onnx`.
        run_info: the JSON written by `train`; the file is logged as an artifact (`onnx/`)
            of that MLflow run.
        tracking_uri: the MLflow tracking URI (used with `run_info`).

    Returns:
        `out`.

    Raises:
        BrainsegError: unknown format, `model` is not a brainseg checkpoint, or the graph
            does not reproduce the torch model (nothing is written then).
    """
    if fmt not in FORMATS:
        raise BrainsegError(f"--format {fmt}: unknown format (supported: {', '.join(FORMATS)})")
    net, config = load_checkpoint(model)
    net = net.to(memory_format=torch.contiguous_format)
    data = export_graph(net, example_input(config), model_metadata(config, model))
    worst = check_graph(net, OnnxNetwork(open_session(data, torch.get_num_threads())), config)
    write_bytes(out, data)
    log.info("exported %s to %s (%.1f MB; largest relative logit difference to torch %.1g)",
             model, out, len(data) / 1e6, worst)
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
    run_export(model=args.model, out=args.out, fmt=args.fmt, run_info=args.run_info,
               tracking_uri=uri)

