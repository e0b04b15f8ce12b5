"""Write the README's performance table from benchmarks/results/latest.json.

Run: .venv/bin/python -m benchmarks.report [--check]

The table sits between the markers `<!-- bench:start -->` and `<!-- bench:end -->` in
README.md and is replaced whole; nothing else in the README is touched. `--check` exits 1
when the README's table differs from the one the results give (the test suite runs it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from benchmarks.common import LATEST, REPO, load_latest

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
README = REPO / "README.md"
ORDER = ("io", "peers_preprocess", "training", "loader", "predict", "metrics", "synthetic",
         "e2e", "scaling", "noop", "peers_training", "gpu")
STAGE_PREFIX = "e2e.stage."  # per-rule figures: a table of their own
log = logging.getLogger("benchmarks.report")


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _row(fig: dict) -> str:
    met = {True: "yes", False: "**no**", None: ""}[fig.get("met")]
    reference = ""
    if fig.get("reference") is not None:
        reference = f"{_num(fig['reference'], fig['unit'])} ({fig['reference_label']})"
    ratio = ""
    if fig.get("ratio") is not None:
        ratio = f"{_num(fig['ratio'])} {fig.get('ratio_label', '')}".strip()
    cells = [fig["label"], _num(fig["value"], fig["unit"]), reference, ratio,
             fig.get("target", ""), met]
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render(data: dict) -> str:
    """The markdown table (with its machine line) for the results `data`."""
    sections = data.get("sections", {})
    names = [n for n in ORDER if n in sections] + sorted(set(sections) - set(ORDER))
    m = data.get("machine", {})
    lines = [START,
             f"Machine: {m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
             f"{m.get('memory_gib', '?')} GiB, torch {m.get('torch', '?')}; each figure is "
             "the median of its repeats (`make bench`, written to "
             "`benchmarks/results/latest.json`).",
             "",
             "| Benchmark | Measured | Floor / peer | Ratio | Target | Met |",
             "| --- | --- | --- | --- | --- | --- |"]
    stages = []
    for name in names:
        for fig in sections[name]["figures"]:
            if fig["key"].startswith(STAGE_PREFIX):
                stages.append(fig)
            else:
                lines.append(_row(fig))
    if stages:
        lines += ["", "End to end, per Snakemake rule (its `benchmark:` files in "
                  "`logs/benchmarks/`; a per-subject rule's seconds are summed over its jobs, "
                  "which run up to 8 at once on these cores, so they exceed the rule's share "
                  "of the wall time):", "",
                  "| Rule | Jobs | Seconds | CPU seconds | Max RSS of a job |",
                  "| --- | --- | --- | --- | --- |"]
        for fig in stages:
            extra = fig.get("extra", {})
            lines.append(f"| {fig['key'][len(STAGE_PREFIX):]} | {extra.get('jobs', '')} | "
                         f"{_num(fig['value'])} | {_num(extra.get('cpu_time_s'))} | "
                         f"{_num(extra.get('max_rss_mib'), 'MiB')} |")
    dated = sorted({(n, sections[n].get("measured", "?")) for n in names}, key=lambda x: x[0])
    dates = sorted({d for _, d in dated})
    if len(dates) > 1:
        lines += ["", "Measured on: " + "; ".join(f"{n} {d}" for n, d in dated) + "."]
    lines.append(END)
    return "\n".join(lines)


def replace_table(readme: str, table: str) -> str:
    """`readme` with the text between the markers (markers included) replaced by `table`."""
    if START not in readme or END not in readme:
        raise SystemExit(f"{README}: markers {START} / {END} not found")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + table + tail


def update(results: Path = LATEST, readme_path: Path = README, check: bool = False) -> int:
    """Rewrite (or with `check`, compare) the README's table; 0 when up to date."""
    readme = readme_path.read_text()
    updated = replace_table(readme, render(load_latest(results)))
    if check:
        if updated != readme:
            log.error("%s: performance table differs from %s; run `python -m benchmarks.report`",
                      readme_path, results)
            return 1
        return 0
    if updated != readme:
        tmp = readme_path.with_name(f".{readme_path.name}.tmp")
        tmp.write_text(updated)
        tmp.replace(readme_path)
        log.info("%s: performance table updated from %s", readme_path, results)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=LATEST, help="results file to read")
    parser.add_argument("--readme", type=Path, default=README, help="README to update")
    parser.add_argument("--check", action="store_true",
                        help="only check that the README's table is up to date (exit 1 if not)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return update(args.results, args.readme, args.check)


if __name__ == "__main__":
    sys.exit(main())
