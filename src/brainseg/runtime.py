"""How a stage runs, not what it computes: device, CPU threads, autocast and seeding.

These knobs stay out of params.yaml (they change speed, not results) and come from the
command line (`--device`, `--threads`, `--workers`) or the environment ($BRAINSEG_DEVICE).
torch is imported by the functions that use it: a command that never runs torch (the
prediction of a 2D ONNX model) never loads it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random

import numpy as np

from brainseg.errors import BrainsegError
from brainseg.parallel import default_jobs
from brainseg.tracking import add_tracking_argument

DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
# inference precision of `predict`: fp32, bf16 autocast, or auto (bf16 where native)
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "auto")


def resolve_device(name: str) -> str:
    """`cpu` or `cuda` for a `--device` value; `auto` is cuda when available, else cpu.

    Raises:
        BrainsegError: cuda asked for without a CUDA device, or an unknown name.
    """
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BrainsegError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise BrainsegError(f"unknown device '{name}' (auto | cpu | cuda; from --device or "
                            "$BRAINSEG_DEVICE)")
    return name


def set_threads(threads: int) -> None:
    """Use `threads` torch CPU threads, at most the usable cores (0: torch's default).

    Snakemake may grant more threads than the machine has (`--cores 8` on 2 cores);
    oversubscribing the cores slows convolutions down, so the grant is capped.
    """
    if threads > 0:
        import torch

        torch.set_num_threads(cpu_threads(threads))


def cpu_threads(threads: int) -> int:
    """`--threads` capped at the usable cores (`set_threads`); 0 stays 0 (the default)."""
    return min(threads, default_jobs(0)) if threads > 0 else 0


def autocast(precision: str, device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast (CPU or CUDA), fp16 autocast (CUDA), or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    import torch

    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def native_bf16(device: str) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA GPU that supports it, or a CPU
    with AMX tiles or AVX-512 BF16 (without them, bf16 convolutions are emulated and run
    several times slower than fp32)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def resolve_precision(name: str, device: str) -> str:
    """`fp32` or `bf16` for a `--precision` value; `auto` is bf16 where `native_bf16`.

    Raises:
        BrainsegError: an unknown name.
    """
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name not in ("fp32", "bf16"):
        raise BrainsegError(f"unknown precision '{name}' ({' | '.join(PRECISIONS)})")
    return name


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic algorithms."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    """`--device` (or $BRAINSEG_DEVICE) and `--threads`, read by `resolve_device`/`set_threads`."""
    parser.add_argument("--device", default=os.environ.get("BRAINSEG_DEVICE", "auto"),
                        choices=list(DEVICES),
                        help="torch device (default: $BRAINSEG_DEVICE, else auto: cuda when "
                        "available, else cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads, at most the usable cores (0: torch's default); "
                        "ONNX Runtime runs an .onnx model on as many")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """`--tracking-uri`, `--device`, `--threads` and `--workers`: speed, not results."""
    add_tracking_argument(parser)
    add_device_arguments(parser)
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
