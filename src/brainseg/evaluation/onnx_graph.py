"""A network as an ONNX graph: export with a dynamic batch and slice size, run with ONNX Runtime.

The graph maps slices `slices` float32 (n, c, h, w) to the network's logits `logits`
float32 (n, k, h, w), for any n, h and w: exactly what the torch module's `forward`
returns (for a fold ensemble, the logits of its mean probabilities), so that
`region_probabilities`, flip TTA and every post-processing run unchanged on its output.
`OnnxNetwork` wraps an ONNX Runtime session as a module with the same call, which is
the one forward-pass interface `brainseg.models.logits` needs.

onnx, onnxscript and onnxruntime are imported inside the functions that need them: a
checkpoint's prediction never pays for them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from brainseg.errors import BrainsegError

log = logging.getLogger(__name__)

INPUT = "slices"
OUTPUT = "logits"
OPSET = 20
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


# The exporter's and optimizer's loggers, which report each graph rewrite at INFO.
QUIET_LOGGERS: tuple[str, ...] = ("onnx_ir", "onnxscript", "torch.onnx")


@contextlib.contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """Raise the level of the loggers `names` to ERROR inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_graph(model: nn.Module, example: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """Serialize `model` (in eval mode, on CPU) to an ONNX model with `metadata` as its
    `metadata_props`.

    torch's dynamo exporter (`torch.export` and onnxscript, torch's default and maintained
    path; the TorchScript exporter is deprecated) traces the module with the batch, height
    and width of `example` (n, c, h, w) as symbolic dimensions. Both exporters give the same
    logits; neither keeps a Python branch on the input's size, so the U-Net pads in the graph
    whatever (h, w) (`UNet._pad`). The weights are stored inside the one file (no external
    data).

    Args:
        model: the network, or a fold `Ensemble` (exported as one graph).
        example: an input (n, c, h, w) of the trained slice size, n >= 2; for a 3D network
            (n, c, d, h, w) of its patch size (depth, height and width all dynamic).
        metadata: string key/value pairs stored in the model.

    Returns:
        The serialized ONNX model.
    """
    names = ("height", "width") if example.dim() == 4 else ("depth", "height", "width")
    dims = {0: torch.export.Dim("batch"),
            **{axis: torch.export.Dim(name) for axis, name in enumerate(names, start=2)}}
    with warnings.catch_warnings(), torch.no_grad(), _quiet(QUIET_LOGGERS):
        warnings.simplefilter("ignore")  # the exporter's own notes on its internals
        program = torch.onnx.export(
            model, (example,), dynamo=True, input_names=[INPUT], output_names=[OUTPUT],
            dynamic_shapes=(dims,), opset_version=OPSET, optimize=True,
            external_data=False, verbose=False)
    return _serialized(program.model_proto, metadata)


def _serialized(proto, metadata: dict[str, str]) -> bytes:
    """An ONNX ModelProto with `metadata` as its metadata_props (replacing any), as bytes."""
    import onnx

    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    buffer = io.BytesIO()
    onnx.save_model(proto, buffer)
    return buffer.getvalue()


def convert_precision(data: bytes, precision: str, metadata: dict[str, str]) -> bytes:
    """An fp32 model (bytes of `export_graph`) in `precision`, with `metadata`.

    - fp32: unchanged;
    - fp16: weights and computation in float16 (onnxruntime's `convert_float_to_float16`),
      input and output kept float32;
    - int8: dynamic quantization (`onnxruntime.quantization.quantize_dynamic`): uint8
      weights, activations quantized at run time, no calibration data.

    Raises:
        BrainsegError: an unknown precision.
    """
    if precision not in PRECISIONS:
        raise BrainsegError(f"--precision {precision}: unknown precision "
                            f"({' | '.join(PRECISIONS)})")
    if precision == "fp32":
        return data
    import onnx

    model = onnx.load_model_from_string(data)
    if precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        return _serialized(convert_float_to_float16(model, keep_io_types=True), metadata)
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet(("root",)):
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(data)
        quantize_dynamic(source, target, weight_type=QuantType.QUInt8)
        return _serialized(onnx.load_model(target), metadata)


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session called like the torch network it was exported from.

    `forward` takes slices (n, c, h, w) (any device, any memory format) and returns float32
    logits (n, k, h, w) on the same device; the session itself runs on the CPU. It has no
    parameters and no train mode: `train()`/`eval()` do nothing.

    Args:
        session: an `onnxruntime.InferenceSession` of a graph written by `export_graph`.
    """

    def __init__(self, session) -> None:
        super().__init__()
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        logits = self.session.run(None, {self.input_name: batch})[0]
        return torch.from_numpy(np.asarray(logits, dtype=np.float32)).to(x.device)

    def train(self, mode: bool = True) -> OnnxNetwork:
        return self


def open_session(source: str | Path | bytes, threads: int):
    """An ONNX Runtime CPU session of a model file (or its bytes) on `threads` threads.

    Raises:
        BrainsegError: the file is missing or not an ONNX model ONNX Runtime can run.
    """
    import onnxruntime as ort

    name = "the exported graph" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes) and not Path(source).is_file():
        raise BrainsegError(f"{source}: ONNX model not found")
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(threads, 0)
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings go to stderr, not our log
    try:
        return ort.InferenceSession(source if isinstance(source, bytes) else str(source),
                                    options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        text = str(exc).strip().splitlines()
        raise BrainsegError(f"{name}: cannot load ONNX model (corrupt or not an ONNX file?): "
                            f"{text[0] if text else type(exc).__name__}") from exc


def load_graph(path: str | Path, threads: int) -> tuple[OnnxNetwork, dict[str, str]]:
    """The network of an ONNX file and its `metadata_props`.

    Args:
        path: a `.onnx` file.
        threads: ONNX Runtime intra-op threads (0: its default, the physical cores).

    Raises:
        BrainsegError: the file is missing or not an ONNX model.
    """
    session = open_session(path, threads)
    return OnnxNetwork(session), dict(session.get_modelmeta().custom_metadata_map)
