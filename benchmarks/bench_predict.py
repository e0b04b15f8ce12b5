"""Seconds per 240x240x155 subject for `brainseg predict`, I/O included (target <= 2 s).

Run: .venv/bin/python -m benchmarks.bench_predict [--repeats 3] [--threads 0] [--cli]
     [--batch 5]
     .venv/bin/python -m benchmarks.bench_predict --dims 3 [--threads 2] [--cli]
Results: section `predict` (2D) or `predict_3d` of benchmarks/results/latest.json.

`--dims 3` times the 3D U-Net of `train.model.dims: 3` (sliding windows of
`train.patch_size`, no TTA; target <= 10 s per subject) at the default window overlap
and at 0.25 and 0 (`brainseg predict --overlap`).

The model has the default architecture and preprocessing of params.yaml (train.model,
extract, normalize) with random weights (seed 0): timing does not depend on the weights.
The subject is the real case in tests/data/real. Timed per subject: reading the four
NIfTI files, reorientation, preprocessing, the forward passes, mapping back and writing
the output (`run_predict`, model loading included); the first call is reported apart
(one-time start-up costs). `--cli` also times the whole command in a fresh process
(Python and torch start-up included), as a user running it once per subject sees it
(target <= 3 s), the same command with the model's ONNX export (`brainseg export`: a
2D model then predicts without torch), and how much of it is start-up (`brainseg predict
--help`). `--batch N`
times one `run_predict` over a folder of N subject folders (copies of the case; the
next subject is read while the network runs on the current one) in seconds per subject
(target <= 1.5 s), against the floor of the forward passes alone (the preprocessed slices
through the network, no reading, mapping back or writing), in fp32 and with `--precision
bf16`, and how many voxels of the bf16 labels are the fp32 ones (`--checkpoint`: a trained
model; `--batch-input`: real subjects instead of copies).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from benchmarks.common import Figure, record, setup_logging
from brainseg.data.inputs import folder_files
from brainseg.evaluation.inference import load_model, output_mode, prepare_volume
from brainseg.evaluation.predict import read_subject, run_predict
from brainseg.models.logits import predict_slices
from brainseg.models.unet import build_model
from brainseg.parallel import keep_freed_memory
from brainseg.params import load_params
from brainseg.runtime import autocast, native_bf16

log = logging.getLogger("bench_predict")
REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "data" / "real" / "TCGA-DU-7294"


def default_checkpoint(path: Path, params_path: Path, dims: int = 2) -> dict:
    """A checkpoint in the format of `train`, default architecture, random weights; `dims`
    3: the 3D U-Net with the params' patch size and overlap."""
    params = load_params(params_path)
    torch.manual_seed(0)
    model_cfg = {**params["train"]["model"], "in_channels": 4, "out_channels": 3}
    config = {"model": model_cfg, "extract": params["extract"], "normalize": params["normalize"]}
    if dims == 3:
        model_cfg.update(dims=3, context_slices=0)
        config["patch"] = {"size": list(params["train"]["patch_size"]),
                           "overlap": params["train"]["patch_overlap"]}
    torch.save({"state_dict": build_model(model_cfg).state_dict(), "config": config}, path)
    return config


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--input", type=Path, default=CASE, help="a subject folder")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--cli", action="store_true",
                        help="also time `brainseg predict` as a fresh command, and its start-up")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a trained checkpoint for --batch (default: random weights; the "
                             "bf16 agreement is only meaningful for a trained model)")
    parser.add_argument("--batch-input", type=Path, default=None, metavar="DIR",
                        help="a folder of subject folders for --batch (default: N copies of "
                             "--input)")
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="also time one command over N subjects, against the forward "
                             "passes alone (0: not)")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=2,
                        help="3: time the 3D U-Net's sliding-window prediction instead "
                             "(section predict_3d)")
    args = parser.parse_args()
    setup_logging()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.dims == 3:
        record("predict_3d", figures_3d(args))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = Path(tmp) / "model.pt", Path(tmp) / "seg.nii.gz"
        config = default_checkpoint(ckpt, args.params)
        log.info("model %s, image_size %d, %d torch threads, input %s", config["model"],
                 config["extract"]["image_size"], torch.get_num_threads(), args.input)
        first = timed(lambda: run_predict(model=str(ckpt), inputs=[args.input], output=out))
        times = [timed(lambda: run_predict(model=str(ckpt), inputs=[args.input], output=out))
                 for _ in range(args.repeats)]
        median = statistics.median(times)
        log.info("in process: first %.2f s; median of %d %.2f s (min %.2f, max %.2f); "
                 "load average %.1f", first, len(times), median, min(times), max(times),
                 os.getloadavg()[0])
        figures = [Figure(
            "predict.subject", "brainseg predict, one 240x240x155 subject", median, "s/subject",
            target="<= 2 s", met=median <= 2.0, repeats=len(times),
            command="python -m benchmarks.bench_predict",
            note=f"in process, I/O and model loading included, {torch.get_num_threads()} "
                 f"threads, default model and image size {config['extract']['image_size']}; "
                 f"first call {first:.2f} s",
            extra={"times": times, "first_s": first})]
        if args.cli:
            cli = command_times(ckpt, out, args)
            figures.append(Figure(
                "predict.command", "brainseg predict, whole command", statistics.median(cli),
                "s/subject", target="<= 3 s", met=statistics.median(cli) <= 3.0,
                repeats=len(cli), command="python -m benchmarks.bench_predict --cli",
                note="a fresh process per subject: Python and torch start-up included",
                extra={"times": cli}))
        if args.cli:
            figures.append(onnx_command_figure(ckpt, out, args, statistics.median(cli)))
            figures.append(startup_figure(args.repeats))
        if args.batch:
            model = args.checkpoint or ckpt
            figures += batch_figures(model, args.input, args.batch, Path(tmp), args.repeats,
                                     args.batch_input)
        record("predict", figures)


def command_times(ckpt: Path, out: Path, args: argparse.Namespace) -> list[float]:
    """Seconds of `brainseg predict` of `args.input` as a fresh command, `args.repeats` times."""
    command = [sys.executable, "-m", "brainseg", "-q", "predict", "--model", str(ckpt),
               "--input", str(args.input), "--output", str(out)]
    if args.threads > 0:
        command += ["--threads", str(args.threads)]
    return [timed(lambda: subprocess.run(command, check=True)) for _ in range(args.repeats)]


def onnx_command_figure(ckpt: Path, out: Path, args: argparse.Namespace,
                        checkpoint_s: float) -> Figure:
    """The whole command with the checkpoint's ONNX export (`brainseg export`), which a 2D
    model runs without torch, against the checkpoint's command (`checkpoint_s`)."""
    from brainseg.evaluation.export import run_export

    graph = run_export(model=ckpt, out=ckpt.with_suffix(".onnx"))
    times = command_times(graph, out, args)
    median = statistics.median(times)
    return Figure(
        "predict.command_onnx", "brainseg predict, whole command, the ONNX export", median,
        "s/subject", reference=checkpoint_s, reference_label="the checkpoint's command",
        ratio=median / checkpoint_s, ratio_label="of the checkpoint's", target="<= 3 s",
        met=median <= 3.0, repeats=len(times), command="python -m benchmarks.bench_predict --cli",
        note="a fresh process per subject: Python and ONNX Runtime start-up, no torch",
        extra={"times": times})


def figures_3d(args: argparse.Namespace) -> list[Figure]:
    """One subject through the 3D U-Net (random weights, the params' architecture and patch),
    in process at the default overlap, 0.25 and 0; with `--cli`, the whole command."""
    figures = []
    keep_freed_memory()  # as `brainseg predict` does
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = Path(tmp) / "model.pt", Path(tmp) / "seg.nii.gz"
        config = default_checkpoint(ckpt, args.params, dims=3)
        default = config["patch"]["overlap"]
        log.info("3D model %s, patch %s, %d torch threads, input %s", config["model"],
                 config["patch"]["size"], torch.get_num_threads(), args.input)
        for overlap in dict.fromkeys((default, 0.25, 0.0)):
            def one(overlap: float = overlap) -> None:
                run_predict(model=str(ckpt), inputs=[args.input], output=out, overlap=overlap)

            first = timed(one)
            times = [timed(one) for _ in range(args.repeats)]
            median = statistics.median(times)
            log.info("overlap %.2f: first %.2f s; median of %d %.2f s; load average %.1f",
                     overlap, first, len(times), median, os.getloadavg()[0])
            is_default = overlap == default
            figures.append(Figure(
                "predict.subject_3d" + ("" if is_default else f"_overlap{overlap:g}"),
                f"brainseg predict, 3D U-Net, one 240x240x155 subject, overlap {overlap:g}",
                median, "s/subject", target="<= 10 s" if is_default else "",
                met=median <= 10.0 if is_default else None, repeats=len(times),
                command="python -m benchmarks.bench_predict --dims 3",
                note=f"in process, sliding windows of {config['patch']['size']}, no TTA, "
                     f"{torch.get_num_threads()} threads, I/O and model loading included; "
                     f"first call {first:.2f} s",
                extra={"times": times, "first_s": first, "overlap": overlap}))
        if args.cli:
            cli = command_times(ckpt, out, args)
            figures.append(Figure(
                "predict.command_3d", "brainseg predict, 3D U-Net, whole command",
                statistics.median(cli), "s/subject", repeats=len(cli),
                command="python -m benchmarks.bench_predict --dims 3 --cli",
                note="a fresh process: Python and torch start-up included",
                extra={"times": cli}))
    return figures


def startup_figure(repeats: int) -> Figure:
    """`brainseg predict --help` in a fresh process: Python start-up and the imports the
    command needs before it reads anything."""
    command = [sys.executable, "-m", "brainseg", "predict", "--help"]
    times = [timed(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
             for _ in range(repeats)]
    return Figure("predict.startup", "brainseg predict --help, fresh process (start-up)",
                  statistics.median(times), "s", repeats=len(times),
                  command="python -m benchmarks.bench_predict --cli",
                  note="Python, the CLI and the predict module's imports (torch comes with "
                       "a checkpoint)",
                  extra={"times": times})


def batch_figures(ckpt: Path, case: Path, n: int, tmp: Path, repeats: int,
                  root: Path | None = None) -> list[Figure]:
    """One `run_predict` over a folder of subjects (`root`, else n copies of `case`), in
    fp32 and in bf16, and the forward-pass floor of each; the bf16 labels against fp32."""
    if root is None:
        root = tmp / "batch"
        root.mkdir()
        for k in range(n):
            (root / f"S{k:03d}").symlink_to(case.resolve(), target_is_directory=True)
    n = len([p for p in root.iterdir() if p.is_dir()])
    model, config = load_model(str(ckpt))
    normed, _ = prepare_volume(config, read_subject(folder_files(case)).image)
    command = f"python -m benchmarks.bench_predict --batch {n}"
    figures, outputs = [], {}
    for precision in ("fp32", "bf16"):
        out = outputs[precision] = tmp / f"batch-{precision}"

        def batch(out: Path = out, precision: str = precision) -> None:
            run_predict(model=str(ckpt), inputs=[root], output=out, precision=precision)

        def forward(precision: str = precision) -> None:
            with autocast(precision, "cpu"):
                predict_slices(model, normed, 32, "cpu", output_mode(config))

        batch()  # warm-up
        per_subject = [timed(batch) / n for _ in range(repeats)]
        forward()
        floor = statistics.median(timed(forward) for _ in range(repeats))
        value = statistics.median(per_subject)
        native = "native" if native_bf16("cpu") else "emulated: no AMX or AVX-512 BF16"
        tag = "" if precision == "fp32" else f", bf16 autocast ({native})"
        figures += [
            Figure(f"predict.forward_floor{'' if precision == 'fp32' else '_bf16'}",
                   f"forward passes alone, one 240x240x155 subject{tag}", floor, "s/subject",
                   repeats=repeats, command=command,
                   note=f"{len(normed)} preprocessed slices through the network, batch 32"),
            Figure(f"predict.batch{'' if precision == 'fp32' else '_bf16'}",
                   f"brainseg predict, a folder of {n} subjects, no TTA{tag}", value,
                   "s/subject", reference=floor, reference_label="forward passes alone",
                   ratio=value / floor, ratio_label="x floor",
                   target="<= 1.5 s" if precision == "fp32" else "",
                   met=value <= 1.5 if precision == "fp32" else None, repeats=repeats,
                   command=command,
                   note="one command, model loading included; the next subject read while "
                        f"the network runs; subjects from {root.name}",
                   extra={"per_subject": per_subject}),
        ]
    same = total = 0
    for a in sorted(outputs["fp32"].iterdir()):
        x = np.asarray(nib.load(a).dataobj)
        y = np.asarray(nib.load(outputs["bf16"] / a.name).dataobj)
        same, total = same + int((x == y).sum()), total + x.size
    figures.append(Figure(
        "predict.bf16_agreement", "bf16 labels identical to fp32", 100 * same / total, "% voxels",
        target=">= 99.99 %", met=same / total >= 0.9999, command=command,
        note=f"every voxel of the {n} label maps; the model of --checkpoint"))
    return figures


if __name__ == "__main__":
    main()
