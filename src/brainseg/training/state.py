"""The resumable training state, saved after every epoch and read back by `train --resume`.

It holds everything an uninterrupted run carries from one epoch to the next: weights,
optimizer, scheduler and loss-scaler states, the random generators, the history, the
best epoch and the early-stopping counter, and the MLflow run id. The batches of an
epoch depend only on (seed, epoch), so these are enough for a resumed run to end with
the same weights as an uninterrupted one. Saved atomically; loaded with
`weights_only=True` (tensors and plain Python values only).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from brainseg.errors import BrainsegError
from brainseg.io.atomic import write_bytes
from brainseg.params import flatten

FORMAT = "brainseg-train-state/1"
# Params sections that decide what a training computes: all must match to resume.
SECTIONS = ("base", "download", "extract", "normalize", "split", "train")


def fingerprint(params: dict[str, Any]) -> dict[str, str]:
    """Flattened params of the sections a training depends on, as strings."""
    return {k: repr(v) for k, v in flatten({s: params[s] for s in SECTIONS}).items()}


def rng_states() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) generator states, in weights_only-safe types."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_states(states: dict[str, Any]) -> None:
    python = states["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_torch(obj: Any, path: Path) -> None:
    """`torch.save` `obj` to `path` atomically, in bytes that depend on `obj` alone.

    Saved to a file, torch names the archive's inner folder after that file (here the
    temporary one, named after the process); saved to a buffer, the folder is always
    `archive`, so equal content gives equal bytes.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def save_state(path: Path, **state: Any) -> None:
    """Write the state (keyword arguments plus format and RNG states) atomically."""
    save_torch({"format": FORMAT, "rng": rng_states(), **state}, path)


def load_state(path: Path, params: dict[str, Any]) -> dict[str, Any]:
    """Read a state written by `save_state` for the same params.

    Raises:
        BrainsegError: when the file is missing, unreadable, not a training state, or
            was written with different params (the message names the changed keys).
    """
    if not path.is_file():
        raise BrainsegError(f"--resume: no training state at {path} (it is written after "
                            "every epoch and removed when a training completes)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt file
        raise BrainsegError(f"{path}: cannot read the training state: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise BrainsegError(f"{path}: not a brainseg training state ({FORMAT})")
    before, now = state["fingerprint"], fingerprint(params)
    changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
    if changed:
        raise BrainsegError(f"{path}: params changed since this state was saved, cannot "
                            f"resume: {', '.join(changed)}")
    return state
