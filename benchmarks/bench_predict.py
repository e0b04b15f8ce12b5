"""Seconds per 240x240x155 subject for `brainseg predict`, I/O included (target < 3 s).

Run: .venv/bin/python benchmarks/bench_predict.py [--repeats 3] [--threads 0] [--cli]

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
    config = {"model": model_cfg, "extract": params["extract"],
              "normalize": params["normalize"], "regions": ["WT", "TC", "ET"]}
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
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, out = Path(tmp) / "model.pt", Path(tmp) / "seg.nii.gz"
        config = default_checkpoint(ckpt, args.params)
        log.info("model %s, image_size %d, %d torch threads, input %s", config["model"],
                 config["extract"]["image_size"], torch.get_num_threads(), args.input)
        first = timed(lambda: run_predict(str(ckpt), [args.input], out))
        times = [timed(lambda: run_predict(str(ckpt), [args.input], out))
                 for _ in range(args.repeats)]
        log.info("in process: first %.2f s; median of %d %.2f s (min %.2f, max %.2f); "
                 "target < 3 s, ratio %.2f; load average %.1f", first, len(times),
                 statistics.median(times), min(times), max(times),
                 statistics.median(times) / 3.0, os.getloadavg()[0])
        if args.cli:
            command = [sys.executable, "-m", "brainseg", "-q", "predict", "--model", str(ckpt),
                       "--input", str(args.input), "--output", str(out)]
            if args.threads > 0:
                command += ["--threads", str(args.threads)]
            cli = [timed(lambda: subprocess.run(command, check=True)) for _ in range(args.repeats)]
            log.info("whole command (process start-up included): median of %d %.2f s "
                     "(min %.2f, max %.2f)", len(cli), statistics.median(cli), min(cli), max(cli))


if __name__ == "__main__":
    main()
