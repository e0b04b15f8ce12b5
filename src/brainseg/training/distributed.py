"""Data-parallel training under `torchrun`: process group, rank, and what only rank 0 does.

`torchrun --nproc_per_node N -m brainseg train ...` sets RANK, WORLD_SIZE and LOCAL_RANK;
without them training runs in one process. The backend is gloo on CPU and nccl on CUDA.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Context:
    """Where this process stands: its rank, the number of processes, and its device."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """Only the main process writes files and logs to MLflow."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def setup(device: str) -> Context:
    """Join the process group when started by torchrun (one CUDA device per local rank)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Context(device=device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    # where each rank runs, for the log only (under Slurm its node's name)
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname()
    log.info("process %d of %d (local rank %d) on node %s", rank, world, local, node)
    return Context(rank=rank, world=world, device=device)


def teardown(ctx: Context) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(value: float, ctx: Context) -> float:
    """The mean of a per-process number over all processes (itself in one process)."""
    if not ctx.distributed:
        return value
    on = ctx.device if ctx.device.startswith("cuda") else "cpu"
    tensor = torch.tensor([value], dtype=torch.float64, device=on)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world


def from_main(obj: Any, ctx: Context) -> Any:
    """`obj` as rank 0 has it, on every rank (e.g. the validation scores, a stop decision)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
