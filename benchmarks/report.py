"""Write the performance table of docs/performance.md from benchmarks/results/latest.json.

Run: .venv/bin/python -m benchmarks.report [--check]

The table sits between the markers `<!-- bench:start -->` and `<!-- bench:end -->` in
docs/performance.md and is replaced whole; nothing else in the file is touched. `--check`
exits 1 when the file's table differs from the one the results give (the test suite runs it).
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path

from benchmarks.common import LATEST, REPO, load_latest

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
DOC = REPO / "docs" / "performance.md"
ORDER = ("io", "peers_preprocess", "training", "loader", "predict", "predict_3d", "metrics",
         "synthetic", "e2e", "scaling", "memory_real", "noop", "peers_training", "peers_real",
         "peers_real_monai", "gpu")
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


def machines(data: dict, names: list[str]) -> str:
    """The machine line: one machine, or each CPU with the sections measured on it (a
    section keeps the machine it was measured on; the file's own is the last one's)."""
    def describe(m: dict) -> str:
        return (f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, "
                f"{m.get('memory_gib', '?')} GiB, torch {m.get('torch', '?')}")

    by_machine: dict[str, list[str]] = {}
    for name in names:
        m = data["sections"][name].get("machine") or data.get("machine", {})
        by_machine.setdefault(describe(m), []).append(name)
    if len(by_machine) <= 1:
        return f"Machine: {next(iter(by_machine), describe(data.get('machine', {})))}"
    return "Machines: " + "; ".join(f"{m} ({', '.join(n)})" for m, n in by_machine.items())


def render(data: dict) -> str:
    """The markdown table (with its machine line) for the results `data`."""
    sections = data.get("sections", {})
    names = [n for n in ORDER if n in sections] + sorted(set(sections) - set(ORDER))
    lines = [START,
             f"{machines(data, names)}; each figure is the median of its repeats (`make "
             "bench`, written to `benchmarks/results/latest.json`).",
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


PEERS_START, PEERS_END = "<!-- peers-real:start -->", "<!-- peers-real:end -->"
PEER_METRICS = (("dice", "Dice"), ("hd95", "HD95 (mm)"), ("lesionwise_dice", "lesion-wise Dice"))


def _peer_header(section: dict) -> str:
    m = section.get("machine", {})
    return (f"Measured {section['measured']} on {m.get('cpu', '?')} ({m.get('cores', '?')} "
            f"cores), folds {section.get('folds')}, {section.get('subjects')} held-out "
            f"subjects: `{section['command']}`.")


def _peer_scores(figs: dict[str, dict], prefix: str, peer: str, short: str) -> list[str]:
    """Per metric and region: both tools' mean ± std over folds and the ratio."""
    lines = [f"| Metric | Region | brainseg (mean ± std over folds) | {peer} | "
             f"ours / {short} |", "| --- | --- | --- | --- | --- |"]
    for metric, name in PEER_METRICS:
        for region in ("WT", "TC", "ET"):
            f = figs.get(f"{prefix}.{metric}.{region}")
            if f is None:
                continue
            e = f.get("extra", {})
            lines.append(f"| {name} | {region} | {_num(f['value'])} ± {_num(e.get('ours_std'))}"
                         f" | {_num(f['reference'])} ± {_num(e.get('peer_std'))} | "
                         f"{_num(f['ratio'])} |")
    return lines


def render_monai_real(data: dict) -> list[str]:
    """The MONAI arm (section peers_real_monai): its scores against ours, and its budget."""
    section = data.get("sections", {}).get("peers_real_monai")
    if section is None:
        return ["", "MONAI BasicUNet on real scans: not measured yet "
                "(`python -m benchmarks.bench_peers_real --peers monai`)."]
    figs = {f["key"]: f for f in section["figures"]}
    lines = ["", "**MONAI BasicUNet (2D) through our training loop.** " + _peer_header(section)
             + f" Ours: as measured {section.get('ours_measured', 'in the same run')}.", ""]
    lines += _peer_scores(figs, "peers_real_monai", "MONAI BasicUNet 2d", "MONAI")
    train = figs.get("peers_real_monai.train_s")
    if train is not None:
        lines += ["", f"Training per fold: ours {_num(train['value'], 's')}, MONAI "
                  f"{_num(train['reference'], 's')} ({train.get('note', '')})."]
    return lines


def render_peers_real(data: dict) -> str:
    """The real-scan comparison with nnU-Net (section peers_real): per metric and region the
    mean ± std over folds of both tools and the ratio; then time and memory; then MONAI."""
    section = data.get("sections", {}).get("peers_real")
    if section is None:
        return f"{PEERS_START}\n(not measured yet: `make bench-peers-real`)\n{PEERS_END}"
    figs = {f["key"]: f for f in section["figures"]}
    lines = [PEERS_START, "**nnU-Net v2 2d through its own commands.** " + _peer_header(section),
             ""]
    lines += _peer_scores(figs, "peers_real", "nnU-Net v2 2d", "nnU-Net")
    lines += ["", "| Time and memory | brainseg | nnU-Net v2 2d | Ratio |",
              "| --- | --- | --- | --- |"]
    for key in ("train_s", "predict_fresh", "predict_fresh_no_tta", "predict_batch",
                "max_rss"):
        f = figs.get(f"peers_real.{key}")
        if f is not None:
            lines.append(f"| {f['label']} | {_num(f['value'], f['unit'])} | "
                         f"{_num(f['reference'], f['unit'])} | {_num(f['ratio'])} "
                         f"{f.get('ratio_label', '')} |".replace("  |", " |"))
    if "peers_real.train_s" in figs:
        note = figs["peers_real.train_s"].get("note", "")
        lines += ["", f"nnU-Net's budget: {note}."]
        steps = [int(e) * int(i) for e, i in re.findall(r"_e(\d+)_i(\d+)", note)]
        if steps:
            span = f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}–{max(steps)}"
            lines += ["", f"At equal training time nnU-Net ran {span} training iterations per "
                      "fold here: its plans (a large batch of large patches) are sized for a "
                      "GPU, so on this CPU it stops before it has learned. These figures therefore "
                      "compare what each tool delivers in the same CPU time, not nnU-Net's "
                      "attainable accuracy (its 2d configuration, trained 1000 epochs on a GPU "
                      "on the full BraTS training set, reaches about 0.90 WT)."]
    lines += render_monai_real(data)
    lines.append(PEERS_END)
    return "\n".join(lines)


def replace_table(text: str, table: str, path: Path = DOC, start: str = START,
                  end: str = END) -> str:
    """`text` with the part between the markers (markers included) replaced by `table`."""
    if start not in text or end not in text:
        raise SystemExit(f"{path}: markers {start} / {end} not found")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + table + tail


def update(results: Path = LATEST, doc_path: Path = DOC, check: bool = False) -> int:
    """Rewrite (or with `check`, compare) the performance table; 0 when up to date."""
    text = doc_path.read_text()
    data = load_latest(results)
    updated = replace_table(text, render(data), doc_path)
    if PEERS_START in text:
        updated = replace_table(updated, render_peers_real(data), doc_path, PEERS_START,
                                PEERS_END)
    if check:
        if updated != text:
            log.error("%s: performance table differs from %s; run `python -m benchmarks.report`",
                      doc_path, results)
            return 1
        return 0
    if updated != text:
        tmp = doc_path.with_name(f".{doc_path.name}.tmp")
        tmp.write_text(updated)
        tmp.replace(doc_path)
        log.info("%s: performance table updated from %s", doc_path, results)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=LATEST, help="results file to read")
    parser.add_argument("--doc", type=Path, default=DOC, help="markdown file to update")
    parser.add_argument("--check", action="store_true",
                        help="only check that the file's table is up to date (exit 1 if not)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return update(args.results, args.doc, args.check)


if __name__ == "__main__":
    sys.exit(main())
