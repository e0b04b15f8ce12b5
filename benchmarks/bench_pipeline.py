"""The whole pipeline: end-to-end wall time and memory, no-op checks, scaling with the cohort.

Run: python -m benchmarks.bench_pipeline [--smoke] [--only e2e,noop,scaling] [--cores 8]
     [--workdir DIR] [--keep] [--scales 1,4,16] [--evaluate-scales 1,4]

Sections (each recorded with `benchmarks.common.record`):
- `e2e`: the repository's tracked files (`git ls-files`, nothing else) copied to a work
  folder, made a git repository, and `snakemake --cores 8` run there on its params.yaml, as
  `make run` does minus install (this Python's bin first on PATH, the copy's own `src`
  imported). Total wall time (target <= 10 min), peak resident memory of the whole process
  tree (psutil, every 0.2 s, RSS summed over snakemake and all its descendants; target
  <= 4 GiB), and per rule the wall and max_rss from Snakemake's benchmark TSVs
  (`logs/benchmarks/`; per-subject rules: sum of job seconds and the job count).
- `noop`: in that finished copy, `dvc commit --force` (records what Snakemake built) and
  `snakemake --touch --cores 1` (tells Snakemake the files DVC re-linked are current, see
  docs/running.md), then `snakemake -n` and `dvc status`, each the median of 3 after one
  untimed call (target <= 2 s), with what each said.
- `scaling`: the non-training stages at 1x, 4x and 16x the copy's cohort, one process per
  stage over all subjects (`--jobs 0`) as dvc.yaml runs them. Each cohort is the copy's
  `data/raw` subjects hard-linked under new ids (`<id>-rNN`) into a BraTS 2020 folder read
  by `download` with `source: local`; then extract, normalize, split, and evaluate with
  the copy's model and post-processing (evaluate only at `--evaluate-scales`, 1x and 4x by
  default: it runs the model on every test subject, about 2 s each, so 16x alone would take
  minutes). Per stage and scale: wall, seconds per subject (evaluate: per test subject) and
  peak RSS of the stage's process tree. Each scale's folder is deleted after measuring.

`--smoke` runs everything on tests/params-smoke.yaml (6 subjects, scales 1x and 2x) and
records into benchmarks/logs/smoke.json instead of the results file.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import psutil
import yaml

from benchmarks.common import LATEST, REPO, Figure, record, setup_logging
from brainseg.data.modalities import BRATS_KEYS

log = logging.getLogger("bench_pipeline")

GIB, MIB = 2**30, 2**20
SECTIONS = ("e2e", "noop", "scaling")
DATA_STAGES = ("download", "extract", "normalize", "split")
SMOKE_PARAMS = REPO / "tests" / "params-smoke.yaml"
SMOKE_RESULTS = REPO / "benchmarks" / "logs" / "smoke.json"
E2E_TARGET_S, MEMORY_TARGET_GIB, NOOP_TARGET_S = 600.0, 4.0, 1.0
LINEAR_TOLERANCE, FLAT_TOLERANCE = 1.2, 1.25


# --- running commands and sampling their memory -------------------------------------------


class TreeSampler(threading.Thread):
    """Peak of the summed RSS of a process and all its descendants, sampled every `interval` s."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = psutil.Process(pid), interval
        self.peak, self.samples = 0, 0
        self._stop_event = threading.Event()

    def sample(self) -> int:
        """Bytes resident in the tree now (processes that end meanwhile are skipped)."""
        total = 0
        for proc in [self.root, *self.root.children(recursive=True)]:
            with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                total += proc.memory_info().rss
        return total

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                self.peak = max(self.peak, self.sample())
            except psutil.NoSuchProcess:
                return
            self.samples += 1
            self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


@dataclass
class Measured:
    """Wall seconds and peak tree RSS (bytes) of one command, and its combined output."""

    wall: float
    peak_rss: int
    output: str


def tool_env(src: Path | None = None) -> dict[str, str]:
    """This Python's bin first on PATH, no MLflow/DVC overrides, `src` first on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    if src is not None:
        env["PYTHONPATH"] = str(src)
    for who in ("AUTHOR", "COMMITTER"):
        env.setdefault(f"GIT_{who}_NAME", "brainseg-bench")
        env.setdefault(f"GIT_{who}_EMAIL", "bench@localhost")
    return env


def measure(cmd: list[str], cwd: Path, env: dict[str, str], log_file: Path,
            timeout: float = 3600) -> Measured:
    """Run `cmd` (output to `log_file`), sampling the memory of its process tree.

    Raises:
        RuntimeError: the command failed or ran past `timeout`; names the log.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        sampler = TreeSampler(proc.pid)
        sampler.start()
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        wall = time.perf_counter() - start
        sampler.stop()
    output = log_file.read_text(errors="replace")
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {cwd}) exited {code}; log {log_file}:\n"
                           f"{output[-3000:]}")
    return Measured(wall, sampler.peak, output)


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    """Run a short command; its output, or RuntimeError with the output if it fails."""
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} (in {cwd}) exited {result.returncode}:\n"
                           f"{(result.stdout + result.stderr)[-3000:]}")
    return result.stdout + result.stderr


# --- e2e ------------------------------------------------------------------------------------


def copy_tracked(dst: Path, params: Path | None, env: dict[str, str]) -> Path:
    """Copy the files git tracks (nothing else) to `dst`, put `params` in place, commit."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel, follow_symlinks=False)
    if params is not None:
        shutil.copy(params, dst / "params.yaml")
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "copy"]):
        run(cmd, dst, env)
    return dst


def read_benchmark_tsvs(folder: Path) -> dict[str, dict]:
    """Snakemake benchmark files per rule: job count, seconds (sum, max), max_rss (MiB).

    `<folder>/<rule>.tsv` is a whole-cohort rule, `<folder>/<rule>/<wildcard>.tsv` one job
    of a per-subject rule. `max_rss` is Snakemake's own sample (every 0.5 s for the first
    15 s of a job, then every 30 s); "-" or "NA" (a job too short to sample) counts as 0.
    """
    stages: dict[str, dict] = {}
    for path in sorted(folder.rglob("*.tsv")):
        rule = path.stem if path.parent == folder else path.parent.name
        with path.open(newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if not rows:
            raise RuntimeError(f"{path}: empty Snakemake benchmark file")
        entry = stages.setdefault(rule, {"jobs": 0, "s": 0.0, "s_max": 0.0, "max_rss_mib": 0.0,
                                         "cpu_time_s": 0.0})
        for row in rows:
            seconds = float(row["s"])
            entry["jobs"] += 1
            entry["s"] += seconds
            entry["s_max"] = max(entry["s_max"], seconds)
            entry["max_rss_mib"] = max(entry["max_rss_mib"], _number(row.get("max_rss")))
            entry["cpu_time_s"] += _number(row.get("cpu_time"))
    return stages


def _number(text: str | None) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def stage_figures(stages: dict[str, dict], command: str) -> list[Figure]:
    """One bare figure per rule: its seconds (summed over jobs), details in `extra`."""
    figures = []
    for rule, entry in stages.items():
        per_subject = entry["jobs"] > 1
        label = (f"e2e stage {rule} ({entry['jobs']} jobs, summed)" if per_subject
                 else f"e2e stage {rule}")
        figures.append(Figure(
            key=f"e2e.stage.{rule}", label=label, value=round(entry["s"], 2), unit="s",
            command=command, extra={k: round(v, 2) for k, v in entry.items()},
            note="from logs/benchmarks (Snakemake benchmark directive); jobs run in parallel, "
                 "so summed seconds exceed their share of the wall time" if per_subject else ""))
    return figures


def bench_e2e(repo: Path, cores: int, env: dict[str, str]) -> tuple[list[Figure], dict]:
    """Run the whole pipeline with Snakemake in `repo`; total, peak memory and per rule."""
    cmd = ["snakemake", "--cores", str(cores)]
    log.info("e2e: %s in %s", " ".join(cmd), repo)
    result = measure(cmd, repo, env, repo.parent / "e2e-snakemake.log")
    command = "python -m benchmarks.bench_pipeline --only e2e"
    peak_gib = result.peak_rss / GIB
    figures = [
        Figure(key="e2e.wall", label=f"make run minus install (snakemake --cores {cores})",
               value=round(result.wall, 1), unit="s", target=f"<= {E2E_TARGET_S:.0f} s",
               met=result.wall <= E2E_TARGET_S, command=command),
        Figure(key="e2e.peak_rss", label="peak resident memory, whole process tree",
               value=round(peak_gib, 3), unit="GiB", target=f"<= {MEMORY_TARGET_GIB:g} GiB",
               met=peak_gib <= MEMORY_TARGET_GIB, command=command,
               note="psutil every 0.2 s, RSS summed over snakemake and its descendants "
                    "(pages shared between processes are counted once per process)"),
    ]
    stages = read_benchmark_tsvs(repo / "logs" / "benchmarks")
    figures += stage_figures(stages, command)
    return figures, {"cores": cores, "n_subjects": n_subjects(repo)}


def n_subjects(repo: Path) -> int:
    with (repo / "data" / "raw" / "manifest.csv").open(newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


# --- noop -----------------------------------------------------------------------------------


def timed_repeats(cmd: list[str], cwd: Path, env: dict[str, str], repeats: int = 3,
                  warmup: int = 1) -> tuple[float, list[float], str]:
    """Median wall seconds of `cmd` over `repeats` runs after `warmup`; the last output."""
    output = ""
    for _ in range(warmup):
        output = run(cmd, cwd, env)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        output = run(cmd, cwd, env)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, output


def prepare_noop(repo: Path, env: dict[str, str]) -> None:
    """Commit, record Snakemake's outputs in dvc.lock, then tell Snakemake they are current."""
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "after snakemake", "--allow-empty"], repo, env)
    start = time.perf_counter()
    run(["dvc", "commit", "--force"], repo, env)
    run(["snakemake", "--touch", "--cores", "1"], repo, env)
    log.info("noop: dvc commit --force + snakemake --touch took %.1f s",
             time.perf_counter() - start)


def bench_noop(repo: Path, env: dict[str, str]) -> list[Figure]:
    """`snakemake -n` and `dvc status` on the finished copy, with what each said, and the
    floor of the first: `snakemake --version`, Snakemake's own start-up (its imports and
    the executor plugins it loads) before any Snakefile is read."""
    prepare_noop(repo, env)
    floor, floor_times, _ = timed_repeats(["snakemake", "--version"], repo, env)
    checks = [("snakemake_n", ["snakemake", "-n", "--cores", "1"], "Nothing to be done"),
              ("dvc_status", ["dvc", "status"], "Data and pipelines are up to date")]
    figures = []
    for name, cmd, expected in checks:
        median, times, output = timed_repeats(cmd, repo, env)
        clean = expected in output
        said = output.strip().splitlines()[-1] if output.strip() else "(no output)"
        note = (f"said: {said!r}" if clean else
                f"NOT up to date: expected {expected!r}, said: {output.strip()[-400:]!r}")
        ref = {"reference": round(floor, 3), "reference_label": "snakemake --version",
               "ratio": median / floor, "ratio_label": "x start-up"} if name == "snakemake_n" \
            else {}
        figures.append(Figure(
            key=f"noop.{name}", label=f"no-op {' '.join(cmd)}", value=round(median, 3),
            unit="s", target=f"<= {NOOP_TARGET_S:g} s", met=median <= NOOP_TARGET_S, **ref,
            repeats=len(times), command="python -m benchmarks.bench_pipeline --only noop",
            note=note, extra={"times_s": [round(t, 3) for t in times], "up_to_date": clean}))
    figures.insert(0, Figure(
        key="noop.snakemake_startup", label="snakemake --version (Snakemake's own start-up)",
        value=round(floor, 3), unit="s", repeats=len(floor_times),
        command="python -m benchmarks.bench_pipeline --only noop",
        note="imports Snakemake and loads every installed executor plugin (the Slurm one "
             "imports pandas)", extra={"times_s": [round(t, 3) for t in floor_times]}))
    return figures


# --- scaling --------------------------------------------------------------------------------


def link_cohort(raw_dir: Path, dst: Path, factor: int) -> list[str]:
    """Hard-link every raw subject `factor` times under new ids into a BraTS 2020 folder."""
    with (raw_dir / "manifest.csv").open(newline="") as fh:
        subjects = [row["subject"] for row in csv.DictReader(fh)]
    ids = []
    for subject in subjects:
        for r in range(factor):
            new = f"{subject}-r{r:02d}"
            (dst / new).mkdir(parents=True)
            for key in BRATS_KEYS:
                os.link(raw_dir / subject / f"{subject}_{key}.nii.gz",
                        dst / new / f"{new}_{key}.nii.gz")
            ids.append(new)
    return ids


def stage_commands(repo: Path) -> dict[str, list[str]]:
    """dvc.yaml's commands for the non-training stages (evaluate with the copy's model)."""
    p = ["--params", "params.yaml"]
    return {
        "download": ["brainseg", "download", *p, "--out-dir", "data/raw", "--jobs", "0"],
        "extract": ["brainseg", "extract", *p, "--raw-dir", "data/raw",
                    "--out-dir", "data/extracted", "--jobs", "0"],
        "normalize": ["brainseg", "normalize", *p, "--in-dir", "data/extracted",
                      "--out-dir", "data/slices", "--jobs", "0"],
        "split": ["brainseg", "split", *p, "--manifest", "data/raw/manifest.csv",
                  "--out", "data/splits.csv"],
        "evaluate": ["brainseg", "evaluate", *p, "--model", str(repo / "models" / "model.pt"),
                     "--splits", "data/splits.csv", "--raw-dir", "data/raw",
                     "--pred-dir", "data/predictions", "--per-subject-out",
                     "reports/per_subject.csv", "--metrics-out", "reports/metrics.json",
                     "--postprocess", str(repo / "reports" / "postprocess.json")],
    }


def count_test_subjects(folder: Path) -> int:
    with (folder / "data" / "splits.csv").open(newline="") as fh:
        return sum(1 for row in csv.DictReader(fh) if row["split"] == "test")


def scale_params(repo: Path, folder: Path, source: Path) -> None:
    """The copy's params with `download` reading the linked folder (`source: local`)."""
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["download"].update(source="local", path=str(source), layout="auto")
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_scale(repo: Path, root: Path, factor: int, with_evaluate: bool,
              env: dict[str, str]) -> dict[str, dict]:
    """Every non-training stage on the cohort `factor` times the copy's; then delete it."""
    folder = root / f"scale-{factor}x"
    ids = link_cohort(repo / "data" / "raw", folder / "source", factor)
    scale_params(repo, folder, folder / "source")
    commands = stage_commands(repo)
    results = {}
    try:
        for stage in [*DATA_STAGES, *(["evaluate"] if with_evaluate else [])]:
            got = measure(commands[stage], folder, env, root / "logs" / f"{factor}x-{stage}.log")
            n = count_test_subjects(folder) if stage == "evaluate" else len(ids)
            results[stage] = {"subjects": n, "wall_s": round(got.wall, 3),
                              "s_per_subject": got.wall / n,
                              "peak_rss_mib": round(got.peak_rss / MIB, 1)}
            log.info("scaling %dx %s: %d subjects, %.1f s (%.3f s/subject), peak %.0f MiB",
                     factor, stage, n, got.wall, got.wall / n, got.peak_rss / MIB)
        results["disk_gib"] = {"outputs": round(tree_bytes(folder / "data") / GIB, 2)}
    finally:
        shutil.rmtree(folder)
    return results


def check_ahead(root: Path, done: dict[int, dict], subjects: int) -> None:
    """Log the time the next scale should take; refuse it if its outputs cannot fit on disk.

    Both are projected from the last scale measured (its data stages' seconds per subject
    and output bytes per subject, plus 10 %).
    """
    if not done:
        return
    last = done[max(done)]
    n = last["extract"]["subjects"]
    seconds = subjects * sum(last[s]["s_per_subject"] for s in DATA_STAGES)
    need = 1.1 * subjects * last["disk_gib"]["outputs"] * GIB / n
    free = shutil.disk_usage(root).free
    log.info("scaling: %d subjects next, about %.0f s and %.1f GiB of outputs projected "
             "(%.1f GiB free)", subjects, seconds, need / GIB, free / GIB)
    if need > free:
        raise RuntimeError(f"{root}: {free / GIB:.1f} GiB free, the {subjects}-subject cohort "
                           f"needs about {need / GIB:.1f} GiB (use --workdir on a larger disk)")


def tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def ratio_figure(key: str, label: str, scales: dict[int, dict], stages: list[str],
                 field: str, unit: str, tolerance: float, target: str, note: str) -> Figure:
    """`field` at the largest scale vs 1x: summed over `stages` (time) or their max (memory)."""
    low, high = min(scales), max(scales)
    combine = sum if field == "s_per_subject" else max
    value = combine(scales[high][s][field] for s in stages)
    ref = combine(scales[low][s][field] for s in stages)
    ratio = value / ref if ref else None
    return Figure(key=key, label=f"{label}, {high}x vs {low}x", value=round(value, 4), unit=unit,
                  reference=round(ref, 4), reference_label=f"at {low}x", ratio=ratio,
                  ratio_label=f"{high}x / {low}x", target=target,
                  met=None if ratio is None else ratio <= tolerance,
                  command="python -m benchmarks.bench_pipeline --only scaling", note=note,
                  extra={f"{k}x": v for k, v in scales.items()})


def bench_scaling(repo: Path, root: Path, factors: list[int], evaluate_factors: list[int],
                  env: dict[str, str]) -> tuple[list[Figure], dict]:
    """Seconds per subject and peak RSS of the non-training stages across cohort sizes."""
    base = n_subjects(repo)
    scales: dict[int, dict] = {}
    for factor in factors:
        check_ahead(root, scales, factor * base)
        scales[factor] = run_scale(repo, root, factor, factor in evaluate_factors, env)
    stages = list(DATA_STAGES)
    what = f"{'+'.join(stages)}, one process per stage, --jobs 0"
    figures = [
        ratio_figure("scaling.s_per_subject", f"s per subject ({what})", scales, stages,
                     "s_per_subject", "s", LINEAR_TOLERANCE,
                     f"ratio ~1.0 (linear; met when <= {LINEAR_TOLERANCE})",
                     "summed over the stages; includes each process's start-up, which "
                     "weighs more on the small cohort"),
        ratio_figure("scaling.peak_rss", f"peak RSS of a stage ({what})", scales, stages,
                     "peak_rss_mib", "MiB", FLAT_TOLERANCE, f"flat (<= {FLAT_TOLERANCE}x)",
                     "largest of the stages' peaks; psutil every 0.2 s, tree RSS summed"),
    ]
    evaluated = {f: scales[f] for f in evaluate_factors if f in scales}
    if len(evaluated) >= 2:
        note = (f"evaluate only at {', '.join(f'{f}x' for f in evaluated)}: per test subject "
                "(split.test_fraction of the cohort), the e2e run's model and postprocess.json")
        figures += [
            ratio_figure("scaling.evaluate_s_per_subject", "evaluate s per test subject",
                         evaluated, ["evaluate"], "s_per_subject", "s", LINEAR_TOLERANCE,
                         f"ratio ~1.0 (linear; met when <= {LINEAR_TOLERANCE})", note),
            ratio_figure("scaling.evaluate_peak_rss", "evaluate peak RSS", evaluated,
                         ["evaluate"], "peak_rss_mib", "MiB", FLAT_TOLERANCE,
                         f"flat (<= {FLAT_TOLERANCE}x)", note),
        ]
    return figures, {"base_subjects": base, "factors": factors,
                     "evaluate_factors": sorted(evaluated)}


# --- main -----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tests/params-smoke.yaml, scales 1x and 2x, results in "
                        "benchmarks/logs/smoke.json (for development)")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run (e2e, noop, scaling); noop and "
                        "scaling without e2e need --workdir holding a finished copy")
    parser.add_argument("--cores", type=int, default=8, help="snakemake --cores (make run: 8)")
    parser.add_argument("--scales", default=None, help="cohort factors (default 1,4,16; smoke 1,2)")
    parser.add_argument("--evaluate-scales", default=None,
                        help="factors at which evaluate is timed too (default 1,4; smoke 1,2)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="work folder (the copy is <workdir>/repo); default: a temporary "
                        "folder, deleted at the end unless --keep")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--results", type=Path, default=None,
                        help=f"results file (default {LATEST.relative_to(REPO)}; smoke: "
                        f"{SMOKE_RESULTS.relative_to(REPO)})")
    args = parser.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown sections {unknown} (expected {', '.join(SECTIONS)})")
    args.scales = _factors(args.scales or ("1,2" if args.smoke else "1,4,16"))
    args.evaluate_scales = _factors(args.evaluate_scales or ("1,2" if args.smoke else "1,4"))
    args.results = args.results or (SMOKE_RESULTS if args.smoke else LATEST)
    return args


def _factors(text: str) -> list[int]:
    return sorted({int(x) for x in text.split(",") if x.strip()})


def run_sections(args: argparse.Namespace, root: Path) -> None:
    repo = root / "repo"
    env = tool_env(repo / "src")
    details = {"params": "tests/params-smoke.yaml" if args.smoke else "params.yaml"}
    if "e2e" in args.only:
        if repo.exists():
            raise RuntimeError(f"{repo} exists: e2e needs a fresh work folder")
        repo.mkdir(parents=True)
        copy_tracked(repo, SMOKE_PARAMS if args.smoke else None, env)
        figures, extra = bench_e2e(repo, args.cores, env)
        record("e2e", figures, path=args.results, **details, **extra)
    elif not (repo / "models" / "model.pt").is_file():
        raise RuntimeError(f"{repo}: no finished pipeline (run with e2e, or --workdir of one)")
    if "noop" in args.only:
        record("noop", bench_noop(repo, env), path=args.results, **details)
    if "scaling" in args.only:
        figures, extra = bench_scaling(repo, root, args.scales, args.evaluate_scales, env)
        record("scaling", figures, path=args.results, **details, **extra)


def main(argv: list[str] | None = None) -> None:
    setup_logging()
    args = parse_args(argv)
    start = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        run_sections(args, args.workdir.resolve())
    else:
        root = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
        try:
            run_sections(args, root)
        finally:
            if args.keep:
                log.info("kept %s", root)
            else:
                shutil.rmtree(root, ignore_errors=True)
    log.info("bench_pipeline: %.0f s in all (%s)", time.perf_counter() - start,
             ", ".join(args.only))


if __name__ == "__main__":
    main()
