"""Training step against this machine's matrix-multiply peak, and what the loader adds.

Run: .venv/bin/python -m benchmarks.bench_training [--params params.yaml] [--steps 8]
Results: sections `training` and `loader` of benchmarks/results/latest.json.

Measured in one process, all cores, median of `--steps` timed steps after warm-up:
- matmul peak: GFLOP/s of a 2048 x 2048 float32 (and bf16) matrix product;
- training step of the model in params.yaml (its width, depth, arch, output, batch size,
  slice size, channels_last), forward + loss + backward + AdamW, fp32 and bf16 autocast:
  FLOPs per step counted with `torch.utils.flop_counter.FlopCounterMode`, achieved GFLOP/s
  and the ratio to the peak of the same dtype (target: >= 75 % in fp32);
- data loader: slices/s of the augmenting DataLoader alone (default augmentation, batches
  from the tumour-oversampling plan), and the share of step time that loading adds in
  the real loop (the same steps fed from the loader vs from batches held in memory;
  target: <= 5 %).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import Figure, median_time, record, setup_logging
from brainseg.models.unet import build_model
from brainseg.params import load_params
from brainseg.runtime import autocast
from brainseg.training.data import SliceDataset, build_augmentation
from brainseg.training.losses import SegmentationLoss
from brainseg.training.optim import build_optimizer
from brainseg.training.sampling import BatchPlan, EpochBatchSampler
from brainseg.training.train import model_config

log = logging.getLogger("bench_training")


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def make_store(root: Path, size: int, subjects: int = 4, n_slices: int = 60) -> list[Path]:
    """Float16 z-scored slices with tumour disks in a third of them, like the normalize stage."""
    rng = np.random.default_rng(0)
    folders = []
    yy, xx = np.mgrid[:size, :size]
    for s in range(subjects):
        folder = root / f"S-{s}"
        folder.mkdir(parents=True)
        label = np.zeros((n_slices, size, size), np.uint8)
        for k in range(0, n_slices, 3):
            d2 = (yy - size // 2 - 5) ** 2 + (xx - size // 2) ** 2
            label[k][d2 < 200], label[k][d2 < 80], label[k][d2 < 20] = 2, 4, 1
        image = rng.normal(0, 1, (n_slices, 4, size, size)) + (label > 0)[:, None]
        np.save(folder / "image.npy", image.astype(np.float16))
        np.save(folder / "label.npy", label)
        folders.append(folder)
    return folders


class Step:
    """One optimizer step of the params' model on a batch (image, label)."""

    def __init__(self, params: dict, precision: str) -> None:
        cfg = params["train"]
        self.model = build_model(model_config(params)["model"]).to(
            memory_format=torch.channels_last if cfg["channels_last"] else torch.contiguous_format)
        self.optimizer = build_optimizer(self.model, cfg["optimizer"])
        self.loss = SegmentationLoss(cfg["model"]["output"], cfg["loss"]["dice_weight"],
                                     cfg["loss"]["ce_weight"])
        self.precision, self.channels_last = precision, cfg["channels_last"]

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> None:
        if self.channels_last:
            image = image.contiguous(memory_format=torch.channels_last)
        with autocast(self.precision, "cpu"):
            out = self.model(image)
        loss = self.loss(out, label)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def time_steps(step: Step, batches: list, repeats: int) -> float:
    step(*batches[0])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        step(*batches[i % len(batches)])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_flops(step: Step, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        step(*batch)
    return counter.get_total_flops()


def loader_for(params: dict, folders: list[Path], workers: int) -> DataLoader:
    cfg, seed = params["train"], params["base"]["seed"]
    dataset = SliceDataset(folders, build_augmentation(cfg["augment"], seed))
    plan = BatchPlan(dataset.has_tumor, cfg["batch_size"], 0, cfg["tumor_fraction"], seed)
    return DataLoader(dataset, batch_sampler=EpochBatchSampler(plan), num_workers=workers,
                      persistent_workers=workers > 0)


def loader_rate(loader: DataLoader) -> float:
    start, n = time.perf_counter(), 0
    for image, _ in loader:
        n += len(image)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml", help="params whose model is timed")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement")
    parser.add_argument("--workers", type=int, default=0, help="data loader workers")
    args = parser.parse_args()
    setup_logging()
    params = load_params(args.params)
    size, batch = params["extract"]["image_size"], params["train"]["batch_size"]
    results: dict = {"machine": platform.processor() or platform.machine(),
                     "threads": torch.get_num_threads(), "torch": torch.__version__,
                     "batch": batch, "size": size, "model": params["train"]["model"]}
    with tempfile.TemporaryDirectory() as tmp:
        folders = make_store(Path(tmp), size)
        loader = loader_for(params, folders, args.workers)
        batches = [b for _, b in zip(range(args.steps), loader, strict=False)]
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peak = matmul_gflops(dtype)
            step = Step(params, precision)
            flops = step_flops(step, batches[0])
            seconds = time_steps(step, batches, args.steps)
            achieved = flops / seconds / 1e9
            results[precision] = {"matmul_gflops": peak, "step_gflop": flops / 1e9,
                                  "step_s": seconds, "slices_per_s": batch / seconds,
                                  "achieved_gflops": achieved, "fraction_of_peak": achieved / peak}
            log.info("%s: step %.3f s (%.1f slices/s), %.2f GFLOP/step, %.1f GFLOP/s = %.0f %% "
                     "of matmul peak %.1f GFLOP/s (target >= 75 %% in fp32)", precision, seconds,
                     batch / seconds, flops / 1e9, achieved, 100 * achieved / peak, peak)
        rate = statistics.median(loader_rate(loader) for _ in range(3))
        step = Step(params, "fp32")

        def memory_loop() -> None:
            for batch_ in batches[: args.steps]:
                step(*batch_)

        def fed_loop() -> None:
            for _, batch_ in zip(range(args.steps), loader, strict=False):
                step(*batch_)

        memory_loop()  # warm-up
        loops: dict[str, list[float]] = {"memory": [], "fed": []}
        for _ in range(5):  # interleaved, so that drift hits both alike
            for name, loop in (("memory", memory_loop), ("fed", fed_loop)):
                loops[name].append(median_time(loop, repeats=1, warmup=0)[0])
        in_memory, fed = statistics.median(loops["memory"]), statistics.median(loops["fed"])
        added = fed / in_memory - 1  # may come out slightly negative: noise
        results["loader"] = {"slices_per_s": rate, "step_rate_ratio": rate
                             / results["fp32"]["slices_per_s"], "added_share": added,
                             "workers": args.workers, "memory_loop_s": loops["memory"],
                             "fed_loop_s": loops["fed"],
                             "batch_load_share": batch / rate / results["fp32"]["step_s"]}
        log.info("loader alone %.0f slices/s = %.1fx the fp32 step rate (target >= 10x); "
                 "adds %.1f %% to the step time in the loop (target <= 5 %%)",
                 rate, results["loader"]["step_rate_ratio"], 100 * added)
    record_results(results, args)


def record_results(results: dict, args: argparse.Namespace) -> None:
    command = "python -m benchmarks.bench_training"
    model = results["model"]
    note = (f"{model['arch']} base {model['base_channels']} depth {model['depth']}, batch "
            f"{results['batch']} at {results['size']}x{results['size']}, forward + loss + "
            f"backward + AdamW; {results['threads']} threads")
    figures = []
    for precision in ("fp32", "bf16"):
        r = results[precision]
        figures.append(Figure(
            f"training.step_{precision}", f"training step, {precision}", r["achieved_gflops"],
            "GFLOP/s", reference=r["matmul_gflops"],
            reference_label=f"{precision} matmul 2048^2", ratio=r["fraction_of_peak"],
            ratio_label="of peak", target=">= 0.75 of peak" if precision == "fp32" else "",
            met=r["fraction_of_peak"] >= 0.75 if precision == "fp32" else None,
            repeats=args.steps, command=command,
            note=f"{note}; {r['step_gflop']:.1f} GFLOP/step, {r['step_s']:.3f} s/step, "
                 f"{r['slices_per_s']:.1f} slices/s", extra=r))
    record("training", figures, model=model)
    loader = results["loader"]
    record("loader", [
        Figure("loader.rate", "augmenting loader alone", loader["slices_per_s"], "slices/s",
               reference=results["fp32"]["slices_per_s"], reference_label="fp32 step rate",
               ratio=loader["step_rate_ratio"], ratio_label="x step rate", target=">= 10x",
               met=loader["step_rate_ratio"] >= 10, repeats=3, command=command,
               note=f"{loader['workers']} workers, default augmentation"),
        Figure("loader.added", "time the loader adds to a step", 100 * loader["added_share"],
               "%", target="<= 5 %", met=loader["added_share"] <= 0.05, repeats=5,
               command=command, note=f"{args.steps} steps fed by the loader vs the same steps from "
                                     "memory, 5 interleaved runs each (median); "
                                     f"{loader['workers']} workers; one batch alone takes "
                                     f"{100 * loader['batch_load_share']:.1f} % of a step"),
    ])


if __name__ == "__main__":
    main()
