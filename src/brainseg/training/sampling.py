"""Which slices each training batch holds: tumour oversampling, seeded per epoch, split by rank.

A batch is a list of `(slice index, sample seed)` pairs. The plan of an epoch depends
only on (seed, epoch), never on earlier epochs, the number of data loader workers or the
process count, so that a resumed run and a data-parallel run see the same batches as an
uninterrupted single-process run. The sample seed drives that slice's augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler

from brainseg.errors import BrainsegError

Batch = list[tuple[int, int]]


def _stream(rng: np.random.Generator, pool: np.ndarray, n: int) -> np.ndarray:
    """`n` draws from `pool`: whole permutations, concatenated, so every item comes up evenly."""
    if n == 0 or len(pool) == 0:
        return np.zeros(0, dtype=np.int64)
    reps = -(-n // len(pool))
    return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:n]


class BatchPlan:
    """The global batches of every epoch.

    Args:
        has_tumor: one bool per dataset index, True for a slice with any tumour label.
        batch_size: global batch size (over all processes).
        slices_per_epoch: slices per epoch (0: the dataset size).
        tumor_fraction: share of each batch drawn from tumour slices (the rest uniformly
            from all slices, tumour ones included, so empty slices are still seen).
        seed: master seed.
        uniform: the indices the rest of each batch is drawn from (None: all of them). A 3D
            `PatchDataset` passes its uniformly centred items, so that exactly
            `tumor_fraction` of a batch is tumour-centred.
    """

    def __init__(self, has_tumor: np.ndarray, batch_size: int, slices_per_epoch: int,
                 tumor_fraction: float, seed: int, uniform: np.ndarray | None = None) -> None:
        self.n = len(has_tumor)
        if self.n == 0:
            raise BrainsegError("the training split holds no slice")
        self.tumor = np.flatnonzero(has_tumor)
        self.uniform = np.arange(self.n) if uniform is None else np.asarray(uniform)
        total = slices_per_epoch or len(self.uniform)
        self.batch_size, self.seed = batch_size, seed
        self.n_batches = max(1, total // batch_size)
        self.n_tumor = round(tumor_fraction * batch_size) if len(self.tumor) else 0

    def __len__(self) -> int:
        return self.n_batches

    def epoch(self, epoch: int) -> list[Batch]:
        """The batches of `epoch` (1-based), as (index, sample seed) pairs."""
        rng = np.random.default_rng([self.seed, epoch])
        n_uniform = self.batch_size - self.n_tumor
        tumor = _stream(rng, self.tumor, self.n_tumor * self.n_batches)
        uniform = _stream(rng, self.uniform, n_uniform * self.n_batches)
        seeds = rng.integers(0, 2**31 - 1, size=(self.n_batches, self.batch_size))
        batches = []
        for b in range(self.n_batches):
            idx = np.concatenate([tumor[b * self.n_tumor:(b + 1) * self.n_tumor],
                                  uniform[b * n_uniform:(b + 1) * n_uniform]])
            batches.append([(int(i), int(s)) for i, s in zip(idx, seeds[b], strict=True)])
        return batches


class EpochBatchSampler(Sampler[Batch]):
    """A DataLoader `batch_sampler` over a `BatchPlan`: this rank's share of each global batch.

    Rank r of `world` processes gets the r-th contiguous chunk of every global batch, so
    the mean of the ranks' mean losses is the global batch's mean loss.
    """

    def __init__(self, plan: BatchPlan, rank: int = 0, world: int = 1) -> None:
        if plan.batch_size % world:
            raise BrainsegError(
                f"train.batch_size {plan.batch_size} is not divisible by the {world} processes"
            )
        self.plan, self.rank, self.world = plan, rank, world
        self.current = 1

    def set_epoch(self, epoch: int) -> None:
        self.current = epoch

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[Batch]:
        share = self.plan.batch_size // self.world
        for batch in self.plan.epoch(self.current):
            yield batch[self.rank * share:(self.rank + 1) * share]
