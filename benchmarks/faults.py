"""Fault injection: every stage killed with SIGKILL at several points, in both runners.

Run: python -m benchmarks.faults [--runner snakemake dvc] [--stages S ...] [--points F ...]
     (`make faults`; about 30 minutes here). tests/integration/test_faults.py runs the same
     harness on the data stages at one point.

A copy of the repository's tracked files with tests/params-smoke.yaml as params runs the
whole pipeline once with each runner (the reference). Then, for each stage and each kill
point F (a fraction of that stage's own run time, measured first: 0.1, 0.5 and 0.9 by
default: early, while it writes, just before its last rename), the stage is forced to run
again and its `brainseg` process is killed with SIGKILL F of the way through; then:
- what the kill left must not look complete: the runner still has the stage to run
  (`snakemake -n` lists it, `dvc status` reports it), unless it is complete: the
  reference's bytes (a kill after the last rename, while the process logged to MLflow or
  exited; DVC then finds every output's hash in dvc.lock);
- the runner is run again (`snakemake --until <rule>`, `dvc repro --single-item`) and
  must complete; Snakemake does not remake an intermediate file whose consumers are
  complete, so a file of the reference still missing then is asked for by name;
- every output that a run gives as the same bytes (data, model, metrics, history) must be
  the reference's bytes, and no temporary file of an atomic write may be left, with one
  exception: when DVC restores the stage from its run cache ("is cached - skipping run")
  no `brainseg` runs, so the hidden temporary name that the killed process left beside an
  output (`reports/.figures.tmp-<pid>`) stays until the next write of that output removes
  it; such a name never looks complete, and these are counted apart.
Recorded (section `faults`): kill points tried, stages killed mid-run, survived, outputs
lost or changed (must be 0).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks.bench_pipeline import copy_tracked, tool_env
from benchmarks.common import REPO, Figure, record, setup_logging

log = logging.getLogger("faults")

SMOKE_PARAMS = REPO / "tests" / "params-smoke.yaml"
# the Snakemake rules (and DVC stages) of the smoke pipeline, in pipeline order
SNAKEMAKE_RULES = ["download_subject", "download", "extract", "normalize", "split", "train",
                   "export", "postprocess", "evaluate", "figures", "realism"]
DVC_STAGES = ["download", "extract", "normalize", "split", "train", "export", "postprocess",
              "evaluate", "figures", "realism"]
POINTS = [0.1, 0.5, 0.9]
# outputs that a rerun gives as the same bytes (an MLflow run id, a figure's renderer
# metadata or a directory's .snakemake_timestamp are not among them)
SAME_BYTES = ["data/raw", "data/extracted", "data/slices", "data/splits.csv",
              "data/predictions", "models/model.pt", "reports/train_history.csv",
              "reports/postprocess.json", "reports/postprocess.csv", "reports/metrics.json",
              "reports/per_subject.csv"]
SNAKEMAKE = ["snakemake", "--workflow-profile", "workflow/profiles/default", "--cores", "1"]


@dataclass
class Outcome:
    runner: str
    stage: str
    point: float
    killed: bool  # the stage's process was alive when killed
    looked_complete: bool  # after the kill, the runner had nothing to rerun
    left_complete: bool  # and what the kill left was the reference's bytes already
    rerun_ok: bool
    changed: list[str]  # outputs whose bytes differ from the reference (or are missing)
    leftovers: list[str]  # temporary files of atomic writes
    restored: bool = False  # DVC restored the stage from its run cache (nothing ran)

    @property
    def survived(self) -> bool:
        return (self.rerun_ok and not self.changed
                and (not self.leftovers or self.restored)
                and not (self.killed and self.looked_complete and not self.left_complete))


def snapshot(repo: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for rel in SAME_BYTES:
        path = repo / rel
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in found:
            if f.name != ".snakemake_timestamp":
                files[f.relative_to(repo).as_posix()] = f.read_bytes()
    return files


def target(rel: str) -> str:
    """The output that holds file `rel`: a directory output for the files within it."""
    return "data/predictions" if rel.startswith("data/predictions/") else rel


def leftovers(repo: Path) -> list[str]:
    return sorted(p.relative_to(repo).as_posix() for top in ("data", "models", "reports")
                  if (repo / top).exists() for p in (repo / top).rglob("*")
                  if ".tmp-" in p.name)


def stage_process(root: psutil.Process) -> psutil.Process | None:
    """The `brainseg <stage>` process under `root` (not the onstart `init-tracking`)."""
    try:
        for child in root.children(recursive=True):
            cmd = child.cmdline()
            if any(part.endswith("brainseg") or part == "brainseg" for part in cmd[:3]) and \
                    "init-tracking" not in cmd:
                return child
    except psutil.NoSuchProcess:
        pass
    return None


def run_and_kill(cmd: list[str], repo: Path, env: dict[str, str],
                 after: float | None) -> tuple[bool, float]:
    """Run `cmd`; `after` seconds after its stage process appears, SIGKILL that process.

    Returns (killed, how long the stage process was seen running: up to the kill, or to
    its end). With `after` None nothing is killed (a measuring run).
    """
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    target, seen, ended, killed = None, 0.0, None, False
    while proc.poll() is None:
        now = time.perf_counter()
        if target is None:
            target = stage_process(root)
            seen = now
        elif ended is None and not target.is_running():
            ended = now
        elif ended is None and after is not None and now - seen >= after:
            try:
                target.kill()
                killed = True
            except psutil.NoSuchProcess:
                pass
            ended = now
        time.sleep(0.02)
    if target is None:
        return False, 0.0
    return killed, (ended or time.perf_counter()) - seen


def commands(runner: str, stage: str) -> dict[str, list[str]]:
    if runner == "snakemake":
        return {"force": [*SNAKEMAKE, "--forcerun", stage, "--until", stage],
                "dry": [*SNAKEMAKE, "-n", "--until", stage],
                "rerun": [*SNAKEMAKE, "--until", stage]}
    return {"force": ["dvc", "repro", "--force", "--single-item", stage],
            "dry": ["dvc", "status", stage],
            "rerun": ["dvc", "repro", "--single-item", stage]}


def still_to_run(runner: str, stage: str, repo: Path, env: dict[str, str]) -> bool:
    out = subprocess.run(commands(runner, stage)["dry"], cwd=repo, env=env,
                         capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    if runner == "snakemake":
        return "Nothing to be done" not in text
    return "up to date" not in text and "didn't change" not in text


def inject(runner: str, repo: Path, env: dict[str, str], stages: list[str],
           points: list[float]) -> list[Outcome]:
    reference = snapshot(repo)
    outcomes = []
    for stage in stages:
        cmd = commands(runner, stage)
        _, lifetime = run_and_kill(cmd["force"], repo, env, None)
        log.info("%s %s: runs %.1f s", runner, stage, lifetime)
        for point in points:
            killed, _ = run_and_kill(cmd["force"], repo, env, point * lifetime)
            looked_complete = not still_to_run(runner, stage, repo, env)
            left_complete = looked_complete and snapshot(repo) == reference
            rerun = subprocess.run(cmd["rerun"], cwd=repo, env=env, capture_output=True,
                                   text=True, timeout=1800)
            missing = sorted({target(k) for k in reference if not (repo / k).exists()})
            if runner == "snakemake" and missing and rerun.returncode == 0:
                # Snakemake does not remake an intermediate file whose consumers are
                # complete (the killed job's, here): asked for by name, as a user would
                rerun = subprocess.run([*SNAKEMAKE, *missing], cwd=repo, env=env,
                                       capture_output=True, text=True, timeout=1800)
            now = snapshot(repo)
            changed = sorted(k for k in reference.keys() | now.keys()
                             if reference.get(k) != now.get(k))
            restored = "is cached - skipping run" in rerun.stdout + rerun.stderr
            outcome = Outcome(runner, stage, point, killed, looked_complete, left_complete,
                              rerun.returncode == 0, changed, leftovers(repo), restored)
            log.info("%s %s killed at %.0f%%: %s%s%s%s", runner, stage, point * 100,
                     "survived" if outcome.survived else "FAILED",
                     "" if killed else " (it had ended before the kill)",
                     " (its outputs were complete at the kill)" if left_complete else "",
                     f" (restored from DVC's run cache; left {outcome.leftovers})"
                     if restored and outcome.leftovers else "")
            if not outcome.survived:
                log.error("%s", outcome)
                if rerun.returncode != 0:
                    log.error("the rerun (%s) ended %d:\n%s", " ".join(rerun.args),
                              rerun.returncode, (rerun.stdout + rerun.stderr)[-4000:])
            outcomes.append(outcome)
    return outcomes


def prepare(root: Path, runner: str, env: dict[str, str],
            until: list[str] | None = None) -> Path:
    """A copy of the repository where `runner` has run the smoke pipeline (only what the
    stages `until` need, when given)."""
    repo = copy_tracked(root / runner, SMOKE_PARAMS, env)
    if runner == "snakemake":
        first = [*SNAKEMAKE, *(["--until", *until] if until else [])]
    else:
        first = ["dvc", "repro", *(until or [])]
    subprocess.run(first, cwd=repo, env=env, check=True, capture_output=True, timeout=3600)
    return repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runner", nargs="+", choices=["snakemake", "dvc"],
                        default=["snakemake", "dvc"], help="the runners to inject faults in")
    parser.add_argument("--stages", nargs="+", default=None, metavar="STAGE",
                        help="only these rules / stages (default: every one of the smoke "
                             "pipeline)")
    parser.add_argument("--points", nargs="+", type=float, default=POINTS, metavar="F",
                        help="kill points, as fractions of each stage's run time "
                             "(default: 0.1 0.5 0.9)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="folder for the copies (default: a temporary one, deleted)")
    parser.add_argument("--no-record", action="store_true",
                        help="print the counts, do not write benchmarks/results/latest.json")
    args = parser.parse_args(argv)
    setup_logging()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="faults_"))
    env = tool_env(REPO / "src")
    outcomes: list[Outcome] = []
    try:
        for runner in args.runner:
            stages = args.stages or (SNAKEMAKE_RULES if runner == "snakemake" else DVC_STAGES)
            repo = prepare(root, runner, env)
            outcomes += inject(runner, repo, env, stages, args.points)
    finally:
        if args.workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    tried = len(outcomes)
    killed = sum(o.killed for o in outcomes)
    survived = sum(o.survived for o in outcomes)
    lost = sum(bool(o.changed) for o in outcomes)
    stale = sum(bool(o.leftovers) for o in outcomes if o.survived)
    command = "python -m benchmarks.faults"
    note = f"{', '.join(args.runner)}; points {' '.join(map(str, args.points))}"
    figures = [
        Figure("faults.tried", "kill points tried (SIGKILL of a stage, then a rerun)", tried,
               "kills", repeats=1, command=command, note=note),
        Figure("faults.killed_mid_run", "of them, stages killed while running", killed,
               "kills", repeats=1, command=command, note="the others had ended first"),
        Figure("faults.survived", "survived (rerun completes, same bytes, nothing left)",
               survived, "kills", reference=tried, reference_label="tried",
               ratio=survived / tried if tried else None, ratio_label="of tried",
               target="all", met=survived == tried, repeats=1, command=command),
        Figure("faults.data_lost", "outputs lost or changed", lost, "kills", target="0",
               met=lost == 0, repeats=1, command=command),
        Figure("faults.stale_after_restore",
               "of the survivors, hidden temporary names left by a DVC run-cache restore",
               stale, "kills", repeats=1, command=command,
               note="nothing ran to remove them; the next write of that output does"),
    ]
    if not args.no_record:
        record("faults", figures)
    else:
        for fig in figures:
            log.info("%s: %s", fig.label, fig.value)
    return 0 if survived == tried else 1


if __name__ == "__main__":
    raise SystemExit(main())
