"""A network as an ONNX graph: export with a dynamic batch and slice size, run with ONNX Runtime.

The graph maps slices `slices` float32 (n, c, h, w) to the network's logits `logits`
float32 (n, k, h, w), for any n, h and w: exactly what the torch module's `forward`
returns (for a fold ensemble, the logits of its mean probabilities), so that
`region_probabilities`, flip TTA and every post-processing run unchanged on its output.
Running a graph needs no torch (`brainseg.evaluation.onnx_runtime`); `OnnxNetwork` wraps
its session as a torch module, for the torch paths (the 3D sliding window, the checks of
`brainseg export`).

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
from brainseg.evaluation.onnx_runtime import OnnxSession

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
        session: an `OnnxSession` (`brainseg.evaluation.onnx_runtime.open_session`).
    """

    def __init__(self, session: OnnxSession) -> None:
        super().__init__()
        self.session = session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(self.session(batch)).to(x.device)

    def train(self, mode: bool = True) -> OnnxNetwork:
        return self
