"""Seconds per 240x240x155 subject for `brainseg predict`, I/O included (target <= 2 s).

Run: .venv/bin/python -m benchmarks.bench_predict [--repeats 3] [--threads 0] [--cli]
Results: section `predict` of benchmarks/results/latest.json.

The model has the default architecture and preprocessing of params.yaml (train.model,
extract, normalize) with random weights (seed 0): timing does not depend on the weights.
The subject is the real case in tests/data/real. Timed per subject: reading the four
NIfTI files, reorientation, preprocessing, the forward passes, mapping back and writing
the output (`run_predict`, model loading included); the first call is reported apart
(one-time start-up costs). `--cli` also times the whole command in a fresh process
(Python and torch start-up included), as a user running it once per subject sees it.
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
from brainseg.evaluation.predict import run_predict
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
    parser.add_argument("--cli", action="store_true", help="also time `brainseg predict`")
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
                "s/subject", repeats=len(cli), command="python -m benchmarks.bench_predict --cli",
                note="a fresh process per subject: Python and torch start-up included",
                extra={"times": cli}))
        record("predict", figures)


if __name__ == "__main__":
    main()
