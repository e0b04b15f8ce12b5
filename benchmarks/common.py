"""What every benchmark shares: timing by median of repeats, the machine, and the results file.

Each benchmark module measures one area and returns `Figure`s; `record(section, figures)`
merges them into `benchmarks/results/latest.json` under `sections.<section>` (other sections
are kept, so one benchmark can be re-run alone) and prints them with their floor or peer
and the ratio. `benchmarks/report.py` turns that file into the table of docs/performance.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
LATEST = RESULTS / "latest.json"

log = logging.getLogger("benchmarks")


@dataclass
class Figure:
    """One measured figure, its reference (a floor or a peer) and its target.

    Attributes:
        key: stable id, `<section>.<name>` (e.g. "io.extract_normalize").
        label: what was measured, as the performance table shows it.
        value: the median of the repeats.
        unit: unit of `value` (and of `reference`).
        reference: the floor or peer it is compared with (None: a bare figure).
        reference_label: what `reference` is.
        ratio: value / reference (or as `ratio_label` says), None without a reference.
        ratio_label: how the ratio reads, e.g. "x floor", "of peak".
        target: the target in words, e.g. "<= 0.43 s".
        met: whether the target is met (None: no target).
        repeats: how many measurements the median is taken over.
        command: the command that measures it.
        note: anything a reader needs (why missed, what was excluded).
        extra: further numbers (min, max, per-stage details), kept in the JSON only.
    """

    key: str
    label: str
    value: float
    unit: str
    reference: float | None = None
    reference_label: str = ""
    ratio: float | None = None
    ratio_label: str = ""
    target: str = ""
    met: bool | None = None
    repeats: int = 1
    command: str = ""
    note: str = ""
    extra: dict = field(default_factory=dict)


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> tuple[float, list]:
    """Median wall seconds of `fn()` over `repeats` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def make_cohort(root: Path, params_path: Path, n_subjects: int | None = None) -> Path:
    """The cohort of `params_path` (optionally its first `n_subjects`) written by
    `brainseg download` into `root/raw`; returns that folder."""
    if n_subjects is not None:
        import yaml

        params = yaml.safe_load(params_path.read_text())
        params["download"]["n_subjects"] = n_subjects
        params_path = root / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    raw = root / "raw"
    log.info("generating the cohort of %s in %s", params_path, raw)
    subprocess.run([sys.executable, "-m", "brainseg", "-q", "download", "--params",
                    str(params_path), "--out-dir", str(raw), "--source-dir",
                    str(root / "source")], check=True)
    return raw


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (platform's processor string elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine a result was measured on: CPU, cores, memory, torch, date."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "date": dt.date.today().isoformat()}
    with contextlib.suppress(ValueError, OSError, AttributeError):
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                   / 2**30, 1)
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    info["load_average"] = round(os.getloadavg()[0], 2)
    return info


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def describe(fig: Figure) -> str:
    """One line: value, reference and ratio, target and whether it is met."""
    text = f"{fig.label}: {fig.value:.4g} {fig.unit}"
    if fig.reference is not None:
        text += f" | {fig.reference_label}: {fig.reference:.4g} {fig.unit}"
    if fig.ratio is not None:
        text += f" | ratio {fig.ratio:.3g}{(' ' + fig.ratio_label) if fig.ratio_label else ''}"
    if fig.target:
        verdict = {True: "met", False: "MISSED", None: "no verdict"}[fig.met]
        text += f" | target {fig.target}: {verdict}"
    return text


def load_latest(path: Path = LATEST) -> dict:
    """The results file, or an empty one."""
    if path.is_file():
        return json.loads(path.read_text())
    return {"machine": {}, "sections": {}}


def invocation() -> str:
    """This command line as a user types it: `python -m benchmarks.<module> ...` for a
    benchmark module (sys.argv holds its file's absolute path)."""
    script = Path(sys.argv[0])
    if script.suffix == ".py" and script.parent.name == "benchmarks":
        return " ".join(["python", "-m", f"benchmarks.{script.stem}", *sys.argv[1:]])
    return " ".join(sys.argv)


def record(section: str, figures: list[Figure], path: Path = LATEST, **details) -> dict:
    """Print `figures` and merge them into the results file under `section`.

    The file's `machine` is this machine; each section also keeps the machine and the
    date it was measured on (a section kept from an earlier run, like the peer training
    behind `make bench-peers`, says so). Written atomically.
    """
    for fig in figures:
        log.info("%s", describe(fig))
    data = load_latest(path)
    info = machine()
    data["machine"] = info
    data.setdefault("sections", {})[section] = {
        "measured": info["date"], "machine": info, "command": invocation(),
        "figures": [{k: _finite(v) for k, v in asdict(fig).items()} for fig in figures],
        **details,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)
    return data


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
