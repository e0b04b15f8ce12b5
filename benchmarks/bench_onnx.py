"""Seconds per subject for `brainseg predict` with a checkpoint (torch) and its ONNX export
(ONNX Runtime), on the same subject and threads.

Run: .venv/bin/python -m benchmarks.bench_onnx --model models/model.pt --onnx models/model.onnx
     [--input tests/data/real/TCGA-DU-7294] [--repeats 3] [--threads 2]
(`brainseg export --model models/model.pt --out models/model.onnx` first.)

Timed as in `bench_predict`: in process (`run_predict`, reading the NIfTI files, model
loading, preprocessing, forward passes, post-processing and writing included; the first call
reported apart), and the whole command in a fresh process (Python, torch and, for the .onnx,
ONNX Runtime start-up included). Prints the figures and the torch / ONNX Runtime ratio, and
the share of voxels on which the two label maps agree; records nothing.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from benchmarks.bench_predict import CASE, timed
from benchmarks.common import setup_logging
from brainseg.evaluation.predict import run_predict

log = logging.getLogger("bench_onnx")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a `train` checkpoint")
    parser.add_argument("--onnx", type=Path, required=True, help="its `brainseg export`")
    parser.add_argument("--input", type=Path, default=CASE, help="a subject folder")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after a warm-up")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and ONNX Runtime threads (0: their default)")
    args = parser.parse_args()
    setup_logging()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    medians: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for name, model in (("torch", args.model), ("onnxruntime", args.onnx)):
            out = Path(tmp) / f"{name}.nii.gz"
            outputs[name] = out

            def once(model=model, out=out):
                run_predict(model=str(model), inputs=[args.input], output=out)

            first = timed(once)
            times = [timed(once) for _ in range(args.repeats)]
            command = [sys.executable, "-m", "brainseg", "-q", "predict", "--model", str(model),
                       "--input", str(args.input), "--output", str(out), "--device", "cpu",
                       "--threads", str(args.threads)]
            cli = [timed(lambda c=command: subprocess.run(c, check=True))
                   for _ in range(args.repeats)]
            medians[name] = {"in_process": statistics.median(times),
                             "command": statistics.median(cli)}
            log.info("%s: in process first %.2f s, median %.2f s (%s); fresh command median "
                     "%.2f s (%s)", name, first, medians[name]["in_process"],
                     " ".join(f"{t:.2f}" for t in times), medians[name]["command"],
                     " ".join(f"{t:.2f}" for t in cli))
        labels = [np.asarray(nib.load(p).dataobj) for p in outputs.values()]
    for key in ("in_process", "command"):
        log.info("%s: torch %.2f s, ONNX Runtime %.2f s: %.2f x torch", key,
                 medians["torch"][key], medians["onnxruntime"][key],
                 medians["onnxruntime"][key] / medians["torch"][key])
    log.info("voxel agreement of the label maps: %.6f; %d torch threads",
             float((labels[0] == labels[1]).mean()), torch.get_num_threads())


if __name__ == "__main__":
    main()
