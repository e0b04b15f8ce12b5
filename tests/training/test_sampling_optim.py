from __future__ import annotations

import numpy as np
import pytest
import torch

from brainseg.errors import BrainsegError
from brainseg.training.optim import build_scheduler, lr_factor
from brainseg.training.sampling import BatchPlan, EpochBatchSampler

HAS_TUMOR = np.array([i % 5 == 0 for i in range(100)])  # 20 % of slices hold tumour


def test_each_batch_holds_the_tumour_share_and_still_sees_empty_slices():
    plan = BatchPlan(HAS_TUMOR, batch_size=10, slices_per_epoch=0, tumor_fraction=0.5, seed=1)
    batches = plan.epoch(1)
    assert len(batches) == 10 and all(len(b) == 10 for b in batches)
    tumour_share = [np.mean([HAS_TUMOR[i] for i, _ in b]) for b in batches]
    assert min(tumour_share) >= 0.5  # half drawn from tumour slices, the rest uniform
    seen = {i for b in batches for i, _ in b}
    assert any(not HAS_TUMOR[i] for i in seen)
    uniform = BatchPlan(HAS_TUMOR, 10, 0, 0.0, seed=1).epoch(1)
    assert sorted(i for b in uniform for i, _ in b) == list(range(100))  # a permutation


def test_plan_depends_only_on_seed_and_epoch():
    a = BatchPlan(HAS_TUMOR, 8, 64, 0.33, seed=3)
    b = BatchPlan(HAS_TUMOR, 8, 64, 0.33, seed=3)
    assert a.epoch(2) == b.epoch(2)  # no state carried from epoch 1
    assert a.epoch(1) != a.epoch(2)
    assert BatchPlan(HAS_TUMOR, 8, 64, 0.33, seed=4).epoch(2) != a.epoch(2)


def test_ranks_split_every_global_batch_into_contiguous_chunks():
    plan = BatchPlan(HAS_TUMOR, 8, 32, 0.33, seed=0)
    ranks = [list(EpochBatchSampler(plan, rank, 2)) for rank in range(2)]
    for global_batch, first, second in zip(plan.epoch(1), *ranks, strict=True):
        assert first + second == global_batch
    with pytest.raises(BrainsegError, match="not divisible"):
        EpochBatchSampler(BatchPlan(HAS_TUMOR, 9, 32, 0.33, seed=0), 0, 2)


def test_lr_warms_up_then_decays():
    assert lr_factor(0, 100, 10, "poly", 0.9) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, "poly", 0.9) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, "poly", 1.0) == pytest.approx(0.5)
    assert lr_factor(55, 100, 10, "cosine", 0.9) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, "cosine", 0.9) == pytest.approx(0.0)
    assert lr_factor(70, 100, 0, "constant", 0.9) == 1.0
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    sched = build_scheduler(opt, {"name": "poly", "warmup_epochs": 0.5, "poly_power": 0.9}, 4, 2)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:2] == pytest.approx([0.005, 0.01]) and lrs[2] > lrs[-1] > 0
