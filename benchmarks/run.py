"""Run every benchmark (`make bench`), then rebuild the performance table of docs/performance.md.

Run: .venv/bin/python -m benchmarks.run [--only io,training] [--skip pipeline] [--peers]

`pipeline` runs first, in a work folder kept until the end: the default cohort its
end-to-end run downloads (`data/raw` of the copy) is the one `io` and `peers_preprocess`
then read. Without `pipeline`, that cohort (params.yaml's download section) is generated
once, in a temporary folder. Each benchmark runs in its own process, one after another
(a quiet machine matters more than a short wall time: close other work first), and
merges its figures into
benchmarks/results/latest.json. A benchmark that fails is reported and the others still
run; the exit status is then 1. The peer trainings (MONAI, segmentation_models_pytorch,
about 28 minutes) run only with `--peers` (`make bench-peers`); their last recorded
results stay in latest.json and in the table.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import report
from benchmarks.common import REPO, make_cohort, setup_logging

log = logging.getLogger("benchmarks.run")
PY = sys.executable
# name -> (command, what it measures); in the order they run.
STEPS: dict[str, tuple[list[str], str]] = {
    "pipeline": ([PY, "-m", "benchmarks.bench_pipeline"],
                 "end to end (Snakemake), no-op, scaling 1x/4x/16x"),
    "io": ([PY, "-m", "benchmarks.bench_io"], "NIfTI decode floor vs extract + normalize"),
    "peers_preprocess": ([PY, "-m", "benchmarks.bench_peers", "--preprocess"],
                         "nnU-Net v2 plan_and_preprocess vs extract + normalize"),
    "training": ([PY, "-m", "benchmarks.bench_training"],
                 "training step vs matmul peak; loader vs step"),
    "predict": ([PY, "-m", "benchmarks.bench_predict", "--cli"], "predict s/subject"),
    "metrics": (["taskset", "-c", "0", PY, "-m", "benchmarks.bench_metrics"],
                "metrics s/subject, one core"),
    "synthetic": (["taskset", "-c", "0", PY, "-m", "benchmarks.bench_synthetic"],
                  "synthetic subject generation, one core"),
}
COHORT_USERS = {"io", "peers_preprocess"}  # given --raw-dir of the cohort made once here
PEERS = ([PY, "-m", "benchmarks.bench_peers", "--training"],
         "MONAI BasicUNet and smp Unet(resnet18) vs ours, same wall budget")


def _names(text: str | None) -> list[str]:
    names = [n for n in (text or "").split(",") if n]
    unknown = sorted(set(names) - set(STEPS) - {"peers_training"})
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {', '.join(STEPS)}, "
                         "peers_training")
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help=f"comma-separated benchmarks to run ({', '.join(STEPS)})")
    parser.add_argument("--skip", help="comma-separated benchmarks to leave out")
    parser.add_argument("--peers", action="store_true",
                        help="also train the peer models (about 28 min; `make bench-peers`)")
    args = parser.parse_args()
    setup_logging()
    only, skip = _names(args.only), _names(args.skip)
    steps = {n: s for n, s in STEPS.items() if (not only or n in only) and n not in skip}
    if args.peers or "peers_training" in only:
        steps["peers_training"] = PEERS
    failed, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_") as tmp:
        pipeline_raw = Path(tmp) / "pipeline" / "repo" / "data" / "raw"
        raw_dir = None
        for name, (command, what) in steps.items():
            log.info("== %s: %s", name, what)
            t0 = time.perf_counter()
            if name == "pipeline":
                command = [*command, "--workdir", str(Path(tmp) / "pipeline")]
            if name in COHORT_USERS:
                if raw_dir is None:  # the e2e run's cohort, else one made here
                    raw_dir = (pipeline_raw if (pipeline_raw / "manifest.csv").is_file()
                               else make_cohort(Path(tmp), REPO / "params.yaml"))
                command = [*command, "--raw-dir", str(raw_dir)]
            code = subprocess.run(command, cwd=REPO).returncode
            log.info("== %s: %s in %.0f s", name, "done" if code == 0 else f"FAILED ({code})",
                     time.perf_counter() - t0)
            if code != 0:
                failed.append(name)
    report_code = report.update()
    log.info("all benchmarks: %.1f min%s", (time.perf_counter() - start) / 60,
             f"; failed: {', '.join(failed)}" if failed else "")
    return 1 if failed or report_code else 0


if __name__ == "__main__":
    sys.exit(main())
