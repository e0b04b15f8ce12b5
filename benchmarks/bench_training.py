"""Training step against this machine's matrix-multiply peak, and what the loader adds.

Run: .venv/bin/python -m benchmarks.bench_training [--params params.yaml] [--steps 8]
Results: sections `training` and `loader` of benchmarks/results/latest.json.

Measured in one process, all cores, median of `--steps` timed steps after warm-up:
- floors, from the hardware up: the chip's fp32 peak (cores x clock x FLOP per cycle of
  its widest FMA units, read from /proc/cpuinfo: `chip_peak_gflops`), the GFLOP/s of a
  2048 x 2048 float32 (and bf16) matrix product, and the best rate of the very
  convolutions the network runs (each conv of the step timed alone, forward only, in the
  step's shapes and memory format: `conv_floor_gflops`);
- training step of the model in params.yaml (its width, depth, arch, output, batch size,
  slice size, channels_last): the training's own `Trainer.step` (forward, loss, backward,
  gradient clipping, AdamW, schedule), fp32 and bf16 autocast:
  FLOPs per step counted with `torch.utils.flop_counter.FlopCounterMode`, achieved GFLOP/s
  and the ratio to each floor (target: >= 75 % of the matmul rate in fp32; a ratio above 1
  means that floor is not a peak, which is why the chip's peak is reported too);
- data loader: slices/s of the training's augmenting DataLoader alone (the params'
  augmentation, batches from the tumour-oversampling plan), and the share of step time
  that loading adds in the real loop (the same steps fed from the loader vs from batches
  held in memory; target: <= 5 %).
"""

from __future__ import annotations

import argparse
import copy
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import Figure, median_time, record, setup_logging
from brainseg.params import load_params
from brainseg.training.distributed import Context
from brainseg.training.train import Trainer

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # Trainer.step

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


FLOP_PER_CYCLE: tuple[tuple[str, int, str], ...] = (
    # (cpu flag, fp32 FLOP per cycle per core, units) -- two FMA pipes per core, as on
    # AMD Zen 2-4 and Intel since Haswell; a chip with one 512-bit pipe has half the first.
    ("avx512f", 64, "2 x 512-bit FMA"),
    ("fma", 32, "2 x 256-bit FMA"),
    ("avx", 16, "256-bit add + mul"),
    ("sse2", 8, "128-bit add + mul"),
)


def chip_peak_gflops(cores: int) -> dict:
    """fp32 peak of `cores` cores at the clock /proc/cpuinfo reports (the base clock in a
    VM, which hides turbo: the true peak may be higher)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = set(next((ln.split(":", 1)[1].split() for ln in info.splitlines()
                      if ln.startswith("flags")), []))
    mhz = [float(ln.split(":", 1)[1]) for ln in info.splitlines() if ln.startswith("cpu MHz")]
    flag, per_cycle, units = next(((f, n, u) for f, n, u in FLOP_PER_CYCLE if f in flags),
                                  ("none", 2, "scalar"))
    clock = max(mhz) / 1000 if mhz else float("nan")
    return {"cores": cores, "clock_ghz": clock, "flop_per_cycle": per_cycle, "isa": flag,
            "units": units, "gflops": cores * clock * per_cycle}


def conv_floor_gflops(model: torch.nn.Module, batch: torch.Tensor, repeats: int = 5) -> float:
    """The best GFLOP/s of any convolution of `model`'s forward on `batch`, each timed alone
    (forward only, its own input shape and memory format, median of `repeats`)."""
    calls: list[tuple[torch.nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: calls.append((mod, inp[0].detach())))
             for m in model.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d)]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    best = 0.0
    with torch.no_grad():
        for module, x in calls:
            with FlopCounterMode(display=False) as counter:
                module(x)
            flops = counter.get_total_flops()
            seconds = median_time(lambda m=module, x=x: m(x), repeats=repeats, warmup=1)[0]
            best = max(best, flops / seconds / 1e9)
    return best


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


def make_trainer(params: dict, root: Path, precision: str, workers: int) -> Trainer:
    """The training's own Trainer on the store under `root` (S-3 validates, the rest train)."""
    params = copy.deepcopy(params)
    params["train"]["precision"] = precision
    subjects = sorted(p.name for p in root.iterdir() if p.is_dir())
    rows = "".join(f"{s},{'val' if s == subjects[-1] else 'train'},0\n" for s in subjects)
    (root / "splits.csv").write_text("subject,split,stratum\n" + rows)
    return Trainer(params, root, root / "splits.csv", Context(device="cpu"), workers)


def time_steps(step: Step, batches: list, repeats: int) -> float:
    step(*batches[0])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        step(*batches[i % len(batches)])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def step_flops(step: Step, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    with FlopCounterMode(display=False) as counter:
        step(*batch)
    return counter.get_total_flops()


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
        make_store(Path(tmp), size)
        trainers = {p: make_trainer(params, Path(tmp), p, args.workers) for p in ("fp32", "bf16")}
        loader = trainers["fp32"].loader
        batches = [b for _, b in zip(range(args.steps), loader, strict=False)]
        chip = chip_peak_gflops(torch.get_num_threads())
        net = trainers["fp32"].model
        results["chip"] = {**chip, "conv_floor_gflops": conv_floor_gflops(
            net, batches[0][0].to(memory_format=torch.channels_last))}
        log.info("chip peak %.1f GFLOP/s fp32 (%d cores x %.2f GHz x %d FLOP/cycle, %s); best "
                 "conv of the network alone %.1f GFLOP/s", chip["gflops"], chip["cores"],
                 chip["clock_ghz"], chip["flop_per_cycle"], chip["units"],
                 results["chip"]["conv_floor_gflops"])
        for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            peak = matmul_gflops(dtype)
            step = trainers[precision].step
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
        step = trainers["fp32"].step

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
            f"{results['batch']} at {results['size']}x{results['size']}, Trainer.step "
            f"(forward, loss, backward, clipping, AdamW, schedule); {results['threads']} threads")
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
    chip, fp32 = results["chip"], results["fp32"]
    figures += [
        Figure("training.step_vs_chip", "training step vs the chip's fp32 peak",
               fp32["achieved_gflops"], "GFLOP/s", reference=chip["gflops"],
               reference_label=f"{chip['cores']} cores x {chip['clock_ghz']:.2f} GHz x "
                               f"{chip['flop_per_cycle']} FLOP/cycle",
               ratio=fp32["achieved_gflops"] / chip["gflops"], ratio_label="of chip peak",
               repeats=args.steps, command=command,
               note=f"{chip['units']} ({chip['isa']}); the clock is the one /proc/cpuinfo "
                    "reports (base clock in a VM)", extra=chip),
        Figure("training.step_vs_conv", "training step vs its best convolution alone",
               fp32["achieved_gflops"], "GFLOP/s", reference=chip["conv_floor_gflops"],
               reference_label="best conv of the network, forward alone",
               ratio=fp32["achieved_gflops"] / chip["conv_floor_gflops"],
               ratio_label="of conv floor", repeats=args.steps, command=command,
               note="each Conv2d/ConvTranspose2d of the forward pass timed alone in the "
                    "step's shapes; the best rate is the floor"),
    ]
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
