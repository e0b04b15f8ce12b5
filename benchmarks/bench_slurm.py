"""What Slurm adds per job: the smoke pipeline run locally and through the Slurm executor.

Run: python -m benchmarks.bench_slurm [--workdir DIR] [--keep] [--node-cpus N ...] [--folds K]

Copies of the repository's tracked files with tests/params-smoke.yaml as params: one runs
`snakemake --workflow-profile workflow/profiles/default --cores N` (N: this machine's
cores), the others `snakemake --profile <the Slurm profile fitted to the node>` on a
one-node cluster of scripts/slurm-local.sh (started and stopped here; root) whose node
offers 1, then N CPUs (--node-cpus): how the per-subject jobs fan out. The fitted
profile is workflow/profiles/slurm with partition `local`, no GPU, at most N threads and
4000 MB per rule, squeue for the job status (no accounting database) and the first status
check after 1 s. Recorded (section `slurm`): both wall times and the overhead per job,
(Slurm wall - local wall) / jobs: sbatch, the job's own `snakemake` start on the node and
the status polling (the plugin checks 1 s after a submission, then every 11, 21, ... s
while nothing finished).

With `--folds K` the smoke params do K-fold cross-validation (`split.folds=K`): K
`train_fold` jobs of one thread each, which a node of N CPUs runs N at a time; recorded
as section `slurm_folds` (the per-rule seconds of the folds from Snakemake's benchmark
files, beside the wall times), so that the fan-out of a fold-parallel training shows.

Each Slurm run's jobs, from the cluster's job-completion file (start and end, to the
second) and the plugin's log folders (which rule), are drawn as a timeline, one row per
job and one panel per node size: benchmarks/results/<section>_timeline.png.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from benchmarks.bench_pipeline import copy_tracked, measure, read_benchmark_tsvs, tool_env
from benchmarks.common import REPO, RESULTS, Figure, record, setup_logging

log = logging.getLogger("bench_slurm")

SCRIPT = REPO / "scripts" / "slurm-local.sh"
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"
SMOKE_PARAMS = REPO / "tests" / "params-smoke.yaml"


def fit_profile(folder: Path, cpus: int, mem_mb: int = 4000, partition: str = "local",
                gpu: bool = False) -> Path:
    """The Slurm profile made to fit a cluster of scripts/slurm-local.sh, written to
    `folder`/config.yaml.

    Its partition, no GPU request unless `gpu` (the nodes then declare GPUs: `--gpus`), at
    most `cpus` threads and `mem_mb` per rule; squeue for the job status (no accounting
    database), the first status check 1 s after a submission, each job's Slurm log kept,
    no retry.

    Args:
        folder: the profile folder to create (given to `snakemake --profile`).
        cpus: the CPUs of a node.
        mem_mb: the most memory a rule may ask for.
        partition: the nodes' partition.
        gpu: keep the profile's GPU requests (the training rules' `gpu: 1`).

    Returns:
        `folder`.
    """
    profile = yaml.safe_load(PROFILE.read_text())  # resolves the &gpu anchor
    profile["default-resources"]["slurm_partition"] = partition
    profile["set-threads"] = {r: min(t, cpus) for r, t in profile["set-threads"].items()}
    for resources in profile["set-resources"].values():
        if not gpu:
            resources.pop("gpu", None)
        resources["mem_mb"] = min(resources["mem_mb"], mem_mb)
    profile.update({"retries": 0, "latency-wait": 5, "slurm-status-command": "squeue",
                    "slurm-init-seconds-before-status-checks": 1,
                    "slurm-keep-successful-logs": True, "slurm-no-account": True})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return folder


def count_jobs(output: str) -> int:
    """The jobs of Snakemake's `Job stats:` table, less the `all` target."""
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return sum(int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)
               if m[1] != "all")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the copies and the clusters' state (default: a "
                             "temporary one, deleted afterwards)")
    parser.add_argument("--keep", action="store_true",
                        help="keep --workdir afterwards (the logs of every run are there)")
    parser.add_argument("--node-cpus", type=int, nargs="+", default=None, metavar="N",
                        help="run the Slurm copy once per N: a cluster whose node offers N "
                             "CPUs, the profile fitted to N threads (default: 1 and this "
                             "machine's cores)")
    parser.add_argument("--folds", type=int, default=0, metavar="K",
                        help="K-fold cross-validation of the smoke params (K train_fold jobs; "
                             "section slurm_folds); default 0: the plain smoke pipeline")
    args = parser.parse_args(argv)
    setup_logging()
    if args.folds == 1 or args.folds < 0:
        parser.error("--folds: 0 (off) or K >= 2")
    if os.geteuid() != 0:
        parser.error("the local Slurm cluster needs root (scripts/slurm-local.sh)")
    cores = os.cpu_count() or 1
    node_cpus = sorted(set(args.node_cpus or [1, cores]))
    if node_cpus[0] < 1 or node_cpus[-1] > cores:
        parser.error(f"--node-cpus: each between 1 and this machine's {cores} cores")
    root = args.workdir or Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    root.mkdir(parents=True, exist_ok=True)
    env = tool_env(REPO / "src")
    section, what = ("slurm_folds", f"smoke pipeline, {args.folds}-fold CV") if args.folds \
        else ("slurm", "smoke pipeline")
    try:
        params = SMOKE_PARAMS
        if args.folds:
            params = root / "params-folds.yaml"
            subprocess.run(["brainseg", "-q", "params", "--base", str(SMOKE_PARAMS), "--set",
                            f"split.folds={args.folds}", "--out", str(params)], env=env,
                           check=True)
        local_repo = copy_tracked(root / "local", params, env)
        local = measure(["snakemake", "--workflow-profile", "workflow/profiles/default",
                         "--cores", str(cores)], local_repo, env, root / "local.log")
        local_folds = read_benchmark_tsvs(local_repo / "logs" / "benchmarks").get("train_fold")
        slurm = {n: run_on_cluster(root / f"slurm-{n}cpu", n, env, params)
                 for n in node_cpus}
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    command = "python -m benchmarks.bench_slurm" + (f" --folds {args.folds}" if args.folds
                                                     else "")
    figures = [Figure(f"{section}.local_wall", f"{what}, local (default profile)",
                      local.wall, "s", repeats=1, command=command, note=f"--cores {cores}",
                      extra={"train_fold": local_folds} if local_folds else {})]
    timeline = RESULTS / f"{section}_timeline.png"
    draw_timeline({n: jobs for n, (_, _, jobs) in slurm.items()}, timeline, what)
    for n, (run, folds, _) in slurm.items():
        jobs = count_jobs(run.output)
        suffix = "" if n == cores else f"_{n}cpu"
        fan_out = ""
        if folds:
            fan_out = (f"; {folds['jobs']} train_fold jobs, {folds['s']:.0f} s of fold "
                       f"training in all ({folds['s_max']:.0f} s the longest)")
        figures += [
            Figure(f"{section}.slurm_wall{suffix}",
                   f"{what}, Slurm executor (one node of {n} CPU(s))", run.wall, "s",
                   reference=local.wall, reference_label=f"local run, {cores} cores",
                   ratio=run.wall / local.wall, ratio_label="x local", repeats=1,
                   command=command, note=f"{jobs} jobs, each through sbatch{fan_out}",
                   extra={"node_cpus": n, "timeline": timeline.relative_to(REPO).as_posix(),
                          **({"train_fold": folds} if folds else {})}),
            Figure(f"{section}.overhead_per_job{suffix}",
                   f"Slurm executor overhead per job ({what}, {n} CPU(s))",
                   (run.wall - local.wall) / jobs, "s", repeats=1, command=command,
                   note="(Slurm wall - local wall) / jobs", extra={"jobs": jobs}),
        ]
    record(section, figures, **({"folds": args.folds} if args.folds else {}))
    return 0


def run_on_cluster(folder: Path, cpus: int, env: dict[str, str], params: Path):
    """The pipeline of `params` through the Slurm profile on a one-node cluster of `cpus`
    CPUs (started in `folder`/slurm-state and stopped again): its measure, the train_fold
    jobs' seconds from Snakemake's benchmark files (None without folds), and its jobs'
    timeline (`job_timeline`)."""
    state = folder / "slurm-state"
    subprocess.run([str(SCRIPT), "up", "--state-dir", str(state), "--cpus", str(cpus)],
                   check=True)
    try:
        repo = copy_tracked(folder / "repo", params, env)
        profile = fit_profile(folder / "profile" / "slurm", cpus)
        measured = measure(["snakemake", "--profile", str(profile)], repo,
                           env | {"SLURM_CONF": str(state / "slurm.conf")},
                           folder / "slurm.log")
        return (measured, read_benchmark_tsvs(repo / "logs" / "benchmarks").get("train_fold"),
                job_timeline(repo, state / "jobcomp.log"))
    finally:
        subprocess.run([str(SCRIPT), "down", "--state-dir", str(state)], check=False)


def job_timeline(repo: Path, jobcomp: Path) -> list[dict]:
    """Each Slurm job of a run: its rule (the plugin's log folder
    .snakemake/slurm_logs/rule_<rule>/.../<jobid>.log), start and end in seconds after the
    first job started (the job-completion file of the cluster, to the second)."""
    rules = {p.stem: p.relative_to(repo / ".snakemake" / "slurm_logs").parts[0][len("rule_"):]
             for p in repo.glob(".snakemake/slurm_logs/rule_*/**/*.log")}
    jobs = []
    for line in jobcomp.read_text().splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("JobId") in rules and fields.get("JobState") == "COMPLETED":
            jobs.append({"rule": rules[fields["JobId"]],
                         "start": dt.datetime.fromisoformat(fields["StartTime"]),
                         "end": dt.datetime.fromisoformat(fields["EndTime"])})
    if not jobs:
        raise RuntimeError(f"{jobcomp}: no completed job of {repo}'s Slurm logs")
    first = min(j["start"] for j in jobs)
    return sorted(({"rule": j["rule"], "start": (j["start"] - first).total_seconds(),
                    "end": (j["end"] - first).total_seconds()} for j in jobs),
                  key=lambda j: (j["start"], j["end"]))


def draw_timeline(runs: dict[int, list[dict]], out: Path, what: str) -> None:
    """One panel per node size: a bar per job from its start to its end, coloured by rule,
    on a shared time axis (written to `out` under a temporary name, then renamed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = list(dict.fromkeys(j["rule"] for jobs in runs.values() for j in jobs))
    colours = {r: plt.get_cmap("tab20")(i % 20) for i, r in enumerate(rules)}
    fig, axes = plt.subplots(len(runs), 1, sharex=True, squeeze=False,
                             figsize=(9, 1.2 + 0.16 * max(len(j) for j in runs.values())
                                      * len(runs)))
    for ax, (cpus, jobs) in zip(axes[:, 0], sorted(runs.items()), strict=True):
        for row, job in enumerate(jobs):
            ax.barh(row, max(job["end"] - job["start"], 0.5), left=job["start"], height=0.8,
                    color=colours[job["rule"]])
        ax.set_yticks([])
        ax.invert_yaxis()
        ax.set_ylabel(f"{cpus} CPU(s)\n{len(jobs)} jobs")
    axes[-1, 0].set_xlabel("seconds after the first job started (Slurm's job-completion times)")
    fig.legend(handles=[plt.Rectangle((0, 0), 1, 1, color=colours[r]) for r in rules],
               labels=rules, loc="lower center", ncol=min(len(rules), 6), fontsize=7,
               frameon=False)
    fig.suptitle(f"{what}: Slurm jobs on one node", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    tmp = out.with_name(f".{out.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png", metadata={"Software": None})
    plt.close(fig)
    tmp.replace(out)


if __name__ == "__main__":
    raise SystemExit(main())
