"""Peak memory of every stage on real BraTS subjects, against what the Slurm profile asks for.

Run: python -m benchmarks.bench_memory [--real DIR] [--cores 2] [--workdir DIR] [--keep]

A copy of the repository's tracked files runs the real preset (workflow/presets/real.yaml)
with Snakemake and the default profile on a local folder of real BraTS scans (default
../shared/fixtures/brats18: 20 subjects of 240 x 240 x 155 voxels, the largest BraTS
shape), with the training cut to one epoch of 64 slices in each of 2 folds: a training
step's memory does not depend on how many there are, and the rest of the preset is kept
(folds ensemble, out-of-fold evaluation, figures). Per rule, the peak resident memory of a
job (the largest over a per-subject rule's jobs) comes from its Snakemake `benchmark:`
file (sampled every 0.5 s for a job's first 15 s, then every 30 s), and the whole run's
process tree is sampled by psutil every 0.2 s.

Target: every rule's peak within the memory the Slurm profile
(workflow/profiles/slurm/config.yaml) requests for it (`mem_mb`), which is what a cluster
job of that rule may use before Slurm kills it.
Recorded in section `memory_real` of benchmarks/results/latest.json.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.bench_pipeline import (
    GIB,
    copy_tracked,
    measure,
    read_benchmark_tsvs,
    run,
    tool_env,
)
from benchmarks.common import REPO, Figure, record, setup_logging

log = logging.getLogger("bench_memory")

DEFAULT_REAL = REPO.parent / "shared" / "fixtures" / "brats18"
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
CHANGES = ["train.epochs=1", "train.slices_per_epoch=64", "train.val_every=1",
           "split.folds=2"]


def requested_mb(profile: Path = SLURM_PROFILE) -> tuple[dict[str, float], float]:
    """The `mem_mb` the Slurm profile sets per rule, and its default for the others."""
    config = yaml.safe_load(profile.read_text())
    per_rule = {rule: float(res["mem_mb"])
                for rule, res in (config.get("set-resources") or {}).items()
                if isinstance(res, dict) and "mem_mb" in res}
    return per_rule, float(config["default-resources"]["mem_mb"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL,
                        help="a folder of real BraTS scans in any supported layout (default: "
                             "../shared/fixtures/brats18)")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores (default 2)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="work folder (default: a temporary one, deleted unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    setup_logging()
    real = args.real.resolve()
    if not real.is_dir():
        parser.error(f"--real {real}: no such folder of real scans")
    root = (args.workdir or Path(tempfile.mkdtemp(prefix="bench-memory-"))).resolve()
    try:
        repo = root / "repo"
        repo.mkdir(parents=True)
        env = tool_env(repo / "src")
        copy_tracked(repo, None, env)
        sets = [*CHANGES, "download.source=local", f"download.path={real}"]
        run(["brainseg", "-q", "params", "--base", "workflow/presets/real.yaml",
             *(x for s in sets for x in ("--set", s)), "--out", "params.yaml"], repo, env)
        cmd = ["snakemake", "--workflow-profile", "workflow/profiles/default",
               "--cores", str(args.cores)]
        log.info("%s on %s (real preset, %s)", " ".join(cmd), real, ", ".join(CHANGES))
        start = time.perf_counter()
        result = measure(cmd, repo, env, root / "snakemake.log", timeout=4 * 3600)
        log.info("ran in %.0f s", time.perf_counter() - start)
        stages = read_benchmark_tsvs(repo / "logs" / "benchmarks")
    finally:
        if args.workdir is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    per_rule, default_mb = requested_mb()
    command = "python -m benchmarks.bench_memory"
    n_subjects = sum(1 for p in real.iterdir() if p.is_dir())
    figures = [Figure(
        key="memory_real.peak_rss", label="real preset run: peak resident memory, whole "
        "process tree", value=round(result.peak_rss / GIB, 3), unit="GiB", command=command,
        note=f"{n_subjects} real subjects, snakemake --cores {args.cores}")]
    for rule, entry in sorted(stages.items()):
        limit = per_rule.get(rule, default_mb)
        peak = entry["max_rss_mib"]
        jobs = f" ({entry['jobs']} jobs, the largest)" if entry["jobs"] > 1 else ""
        figures.append(Figure(
            key=f"memory_real.{rule}", label=f"real subjects: peak RSS of one {rule} job{jobs}",
            value=round(peak, 1), unit="MiB", reference=limit,
            reference_label="Slurm profile mem_mb", ratio=round(peak / limit, 3),
            ratio_label="of requested", target="<= requested", met=peak <= limit,
            command=command, extra={k: round(v, 2) for k, v in entry.items()}))
    record("memory_real", figures, real=str(real), n_subjects=n_subjects, changes=CHANGES)
    return 0 if all(f.met is not False for f in figures) else 1


if __name__ == "__main__":
    raise SystemExit(main())
