"""AdamW with a per-step learning rate: linear warm-up, then poly, cosine or constant."""

from __future__ import annotations

import math
from typing import Any

import torch


def build_optimizer(model: torch.nn.Module, cfg: dict[str, Any]) -> torch.optim.AdamW:
    """AdamW from the `train.optimizer` params (decoupled weight decay)."""
    return torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])


def lr_factor(step: int, total: int, warmup: int, name: str, power: float) -> float:
    """Learning rate at `step` (0-based) as a fraction of the peak.

    Warm-up rises linearly to 1 over the first `warmup` steps; then `poly` decays as
    (1 - t)^power, `cosine` as (1 + cos(pi t)) / 2, with t going from 0 to 1 over the
    remaining steps, and `constant` stays at 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    if name == "poly":
        return (1.0 - t) ** power
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: dict[str, Any], steps_per_epoch: int,
                    epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step, from the `train.schedule` params."""
    total = steps_per_epoch * epochs
    warmup = round(cfg["warmup_epochs"] * steps_per_epoch)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: lr_factor(step, total, warmup, cfg["name"], cfg["poly_power"]),
    )


def clip_gradients(model: torch.nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm` (0: no clipping); returns the norm before."""
    if max_norm <= 0:
        return float("nan")
    return float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
