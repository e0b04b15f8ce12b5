"""Seconds per 240x240x155 subject for `brainseg predict`, I/O included (target <= 2 s).

Run: .venv/bin/python -m benchmarks.bench_predict [--repeats 3] [--threads 0] [--cli]
     [--batch 5]
Results: section `predict` of benchmarks/results/latest.json.

The model has the default architecture and preprocessing of params.yaml (train.model,
extract, normalize) with random weights (seed 0): timing does not depend on the weights.
The subject is the real case in tests/data/real. Timed per subject: reading the four
NIfTI files, reorientation, preprocessing, the forward passes, mapping back and writing
the output (`run_predict`, model loading included); the first call is reported apart
(one-time start-up costs). `--cli` also times the whole command in a fresh process
(Python and torch start-up included), as a user running it once per subject sees it
(target <= 3 s), and how much of it is start-up (`brainseg predict --help`). `--batch N`
times one `run_predict` over a folder of N subject folders (copies of the case; the
next subject is read while the network runs on the current one) in seconds per subject
(target <= 1.5 s), against the floor of the forward passes alone (the preprocessed slices
through the network, no reading, mapping back or writing).
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

import torch

from benchmarks.common import Figure, record, setup_logging
from brainseg.data.inputs import folder_files
from brainseg.evaluation.inference import load_model, output_mode, prepare_volume
from brainseg.evaluation.predict import read_subject, run_predict
from brainseg.models.logits import predict_slices
from brainseg.models.unet import build_model
from brainseg.params import load_params

log = logging.getLogger("bench_predict")
REPO = Path(__file__).resolve().parents[1]
CASE = REPO / "tests" / "data" / "real" / "TCGA-DU-7294"


def default_checkpoint(path: Path, params_path: Path) -> dict:
    """A checkpoint in the format of `train`, default architecture, random weights."""
    params = load_params(params_path)
    torch.manual_seed(0)
    model_cfg = {**params["train"]["model"], "in_channels": 4, "out_channels": 3}
    config = {"model": model_cfg, "extract": params["extract"], "normalize": params["normalize"]}
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
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="also time one command over N subjects, against the forward "
                             "passes alone (0: not)")
    args = parser.parse_args()
    setup_logging()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
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
            command = [sys.executable, "-m", "brainseg", "-q", "predict", "--model", str(ckpt),
                       "--input", str(args.input), "--output", str(out)]
            if args.threads > 0:
                command += ["--threads", str(args.threads)]
            cli = [timed(lambda: subprocess.run(command, check=True)) for _ in range(args.repeats)]
            figures.append(Figure(
                "predict.command", "brainseg predict, whole command", statistics.median(cli),
                "s/subject", target="<= 3 s", met=statistics.median(cli) <= 3.0,
                repeats=len(cli), command="python -m benchmarks.bench_predict --cli",
                note="a fresh process per subject: Python and torch start-up included",
                extra={"times": cli}))
        if args.cli:
            figures.append(startup_figure(args.repeats))
        if args.batch:
            figures += batch_figures(ckpt, args.input, args.batch, Path(tmp), args.repeats)
        record("predict", figures)


def startup_figure(repeats: int) -> Figure:
    """`brainseg predict --help` in a fresh process: Python start-up and the imports the
    command needs before it reads anything."""
    command = [sys.executable, "-m", "brainseg", "predict", "--help"]
    times = [timed(lambda: subprocess.run(command, check=True, stdout=subprocess.DEVNULL))
             for _ in range(repeats)]
    return Figure("predict.startup", "brainseg predict --help, fresh process (start-up)",
                  statistics.median(times), "s", repeats=len(times),
                  command="python -m benchmarks.bench_predict --cli",
                  note="Python, the CLI and the predict module's imports (torch among them)",
                  extra={"times": times})


def batch_figures(ckpt: Path, case: Path, n: int, tmp: Path, repeats: int) -> list[Figure]:
    """One `run_predict` over a folder of n copies of `case`, and the forward-pass floor."""
    root, out = tmp / "batch", tmp / "batch-out"
    root.mkdir()
    for k in range(n):
        (root / f"S{k:03d}").symlink_to(case.resolve(), target_is_directory=True)
    run_predict(model=str(ckpt), inputs=[root], output=out)  # warm-up
    per_subject = [timed(lambda: run_predict(model=str(ckpt), inputs=[root], output=out)) / n
                   for _ in range(repeats)]
    model, config = load_model(str(ckpt))
    normed, _ = prepare_volume(config, read_subject(folder_files(case)).image)
    predict_slices(model, normed, 32, "cpu", output_mode(config))  # warm-up
    floor = statistics.median(
        timed(lambda: predict_slices(model, normed, 32, "cpu", output_mode(config)))
        for _ in range(repeats))
    value = statistics.median(per_subject)
    command = f"python -m benchmarks.bench_predict --batch {n}"
    return [
        Figure("predict.forward_floor", "forward passes alone, one 240x240x155 subject", floor,
               "s/subject", repeats=repeats, command=command,
               note=f"{len(normed)} preprocessed slices through the network, batch 32"),
        Figure("predict.batch", f"brainseg predict, a folder of {n} subjects, no TTA", value,
               "s/subject", reference=floor, reference_label="forward passes alone",
               ratio=value / floor, ratio_label="x floor", target="<= 1.5 s",
               met=value <= 1.5, repeats=repeats, command=command,
               note="one command, model loading included; the next subject read while the "
                    "network runs; the same case's files n times (page-cached)",
               extra={"per_subject": per_subject}),
    ]


if __name__ == "__main__":
    main()
