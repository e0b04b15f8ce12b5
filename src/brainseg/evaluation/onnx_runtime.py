"""Run an ONNX model written by `brainseg export` with ONNX Runtime on the CPU, without torch.

`OnnxSession` is an `ArrayNetwork`: float32 slices in, float32 logits out, so a 2D
model's prediction (`brainseg predict --model models/model.onnx`) imports neither torch
nor onnx. onnxruntime itself is imported when a session is opened.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainseg.errors import BrainsegError
from brainseg.models.arrays import ArrayNetwork


class OnnxSession(ArrayNetwork):
    """An ONNX Runtime session of a graph written by `export_graph` (input: its first)."""

    def __init__(self, session) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: batch})[0]
        return np.asarray(logits, dtype=np.float32)

    @property
    def metadata(self) -> dict[str, str]:
        """The model's `metadata_props`."""
        return dict(self.session.get_modelmeta().custom_metadata_map)


def open_session(source: str | Path | bytes, threads: int) -> OnnxSession:
    """An ONNX Runtime CPU session of a model file (or its bytes) on `threads` threads.

    Args:
        source: a `.onnx` file, or a serialized model.
        threads: intra-op threads (0: ONNX Runtime's default, the physical cores).

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
        session = ort.InferenceSession(source if isinstance(source, bytes) else str(source),
                                       options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        text = str(exc).strip().splitlines()
        raise BrainsegError(f"{name}: cannot load ONNX model (corrupt or not an ONNX file?): "
                            f"{text[0] if text else type(exc).__name__}") from exc
    return OnnxSession(session)
