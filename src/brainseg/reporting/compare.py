"""Command `compare`: is the difference between two evaluations of the same subjects real?

`brainseg compare A B` reads the per-subject table of each source (a folder, `rev:<REV>`
of git or a DVC experiment, `runs:/<run_id>` of MLflow: `brainseg.reporting.sources`),
pairs the subjects, and reports for one metric family (`--metric`, default dice), per
region and for the per-subject mean over the regions: the means of A and B, the mean
difference B - A with its paired bootstrap 95% interval, the Wilcoxon signed-rank
p-value and the number of subjects (`brainseg.evaluation.statistics`). It prints the
table and, with `--out DIR`, writes `comparison.json`, `deltas.csv` (every subject's pair
and difference) and `comparison.png` (a paired dot plot per region).

Non-finite values (`n/a`, NaN, inf): the pair is dropped from that region's statistics
and counted (`n_dropped`, and a line under the table). The mean row of a subject is the
mean over the regions available in both sources (a region is available in a source when
it has at least one finite value), so one dropped region drops the subject's mean.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainseg.data.labels import NOT_AVAILABLE, REGIONS
from brainseg.errors import BrainsegError
from brainseg.evaluation.statistics import CONFIDENCE, compare_paired
from brainseg.io.atomic import write_text
from brainseg.reporting.sources import SourceError, read_source

log = logging.getLogger(__name__)

ROWS: tuple[str, ...] = (*REGIONS, "mean")
MISSING_SHOWN = 5


def metric_families(table: pd.DataFrame) -> list[str]:
    """The metric families of a per-subject table: `<metric>` of every `<metric>_<region>`."""
    return sorted({c.rsplit("_", 1)[0] for c in map(str, table.columns)
                   if c.rsplit("_", 1)[-1] in REGIONS and "_" in c})


def _refuse(a: str, b: str, why: str) -> BrainsegError:
    return BrainsegError(f"cannot compare A ({a}) with B ({b}): {why}")


def _numeric(table: pd.DataFrame, columns: list[str], side: str, a: str, b: str
             ) -> pd.DataFrame:
    """The columns as floats indexed by subject; `n/a` (already NaN) and inf are kept."""
    values = table.set_index("subject")[columns].apply(pd.to_numeric, errors="coerce")
    bad = values.isna() & table.set_index("subject")[columns].notna()
    if bad.to_numpy().any():
        column = bad.any().idxmax()
        example = table.set_index("subject").loc[bad[column], column].iloc[0]
        raise _refuse(a, b, f"{side}: column {column} holds a value that is not a number "
                      f"({example!r})")
    return values


def paired_values(table_a: pd.DataFrame, table_b: pd.DataFrame, metric: str, a: str = "A",
                  b: str = "B") -> pd.DataFrame:
    """Long table of the pairs: subject, region (WT, TC, ET, mean), a, b, delta (b - a).

    Raises:
        BrainsegError: naming both sources, when the subjects differ or a source lacks
            a column `<metric>_<region>`.
    """
    only_a = sorted(set(table_a["subject"]) - set(table_b["subject"]))
    only_b = sorted(set(table_b["subject"]) - set(table_a["subject"]))
    if only_a or only_b:
        parts = [f"{len(names)} only in {side} ({', '.join(map(str, names[:MISSING_SHOWN]))}"
                 f"{', ...' if len(names) > MISSING_SHOWN else ''})"
                 for side, names in (("A", only_a), ("B", only_b)) if names]
        raise _refuse(a, b, f"they score different subjects: {'; '.join(parts)}")
    for side, table in (("A", table_a), ("B", table_b)):
        missing = [f"{metric}_{r}" for r in REGIONS if f"{metric}_{r}" not in table.columns]
        if missing:
            raise _refuse(a, b, f"{side} has no column {', '.join(missing)} (metrics there: "
                          f"{', '.join(metric_families(table)) or 'none'})")
    columns = [f"{metric}_{r}" for r in REGIONS]
    left, right = (_numeric(table, columns, side, a, b)
                   for side, table in (("A", table_a), ("B", table_b)))
    right = right.loc[left.index]
    both = [c for c in columns if np.isfinite(left[c]).any() and np.isfinite(right[c]).any()]
    frames = []
    for region, column in [*zip(REGIONS, columns, strict=True), ("mean", None)]:
        va = left[column] if column else left[both].mean(axis=1, skipna=False)
        vb = right[column] if column else right[both].mean(axis=1, skipna=False)
        frames.append(pd.DataFrame({"subject": left.index, "region": region,
                                    "a": va.to_numpy(float), "b": vb.to_numpy(float)}))
    pairs = pd.concat(frames, ignore_index=True)
    pairs["delta"] = pairs["b"] - pairs["a"]
    pairs["kept"] = np.isfinite(pairs["a"]) & np.isfinite(pairs["b"])
    return pairs


def run_compare(a: str, b: str, *, metric: str = "dice", out: Path | None = None,
                n_boot: int = 10_000, seed: int = 0, repo: Path = Path("."),
                tracking_uri: str = "", labels: tuple[str, str] = ("A", "B"),
                dpi: int = 120) -> dict[str, Any]:
    """Compare evaluation B with evaluation A of the same subjects.

    Args:
        a, b: the two sources (see `brainseg.reporting.sources`).
        metric: the metric family: columns `<metric>_{WT,TC,ET}` in both tables.
        out: folder for comparison.json, deltas.csv and comparison.png (None: none).
        n_boot: bootstrap replicates.
        seed: bootstrap seed (the same for every region).
        repo: the repository of `rev:` sources.
        tracking_uri: the MLflow tracking URI of `runs:/` sources.
        labels: names of A and B in the figure.
        dpi: resolution of the figure.

    Returns:
        The content of comparison.json: sources, settings and, under `regions`, the
        `PairedComparison` of WT, TC, ET and mean.

    Raises:
        BrainsegError: a source cannot be read, the subjects differ or the metric is
            absent; the message names both sources.
    """
    tables = []
    for side, source in (("A", a), ("B", b)):
        try:
            tables.append(read_source(source, repo, tracking_uri))
        except SourceError as exc:
            raise _refuse(a, b, f"{side}: {exc}") from exc
    pairs = paired_values(*tables, metric, a, b)
    regions = {region: compare_paired(rows["a"].to_numpy(), rows["b"].to_numpy(), n_boot,
                                      seed).as_dict()
               for region, rows in pairs.groupby("region", sort=False)}
    result = {"metric": metric, "a": {"source": a, "label": labels[0]},
              "b": {"source": b, "label": labels[1]},
              "n_subjects": int(pairs["subject"].nunique()), "bootstrap": n_boot,
              "seed": seed, "confidence": CONFIDENCE, "regions": regions}
    if out is not None:
        write_text(out / "comparison.json", json.dumps(result, indent=2, allow_nan=False) + "\n")
        write_text(out / "deltas.csv", pairs.to_csv(index=False, lineterminator="\n",
                                                    na_rep=NOT_AVAILABLE))
        plot_paired(pairs, regions, metric, labels, out / "comparison.png", dpi)
        log.info("wrote %s/{comparison.json,deltas.csv,comparison.png}", out)
    return result


def plot_paired(pairs: pd.DataFrame, regions: dict[str, dict[str, Any]], metric: str,
                labels: tuple[str, str], path: Path, dpi: int = 120) -> None:
    """Paired dot plot, one panel per region: each subject's A and B joined by a line.

    Args:
        pairs: `paired_values`' long table; dropped pairs are left out.
        regions: region -> `PairedComparison.as_dict()`; the mean difference, its
            interval, p and n are written above each panel.
        metric: the metric family (the y-axis label).
        labels: the names of A and B (the x-axis).
        path: the PNG (written atomically).
    """
    import matplotlib.pyplot as plt

    from brainseg.reporting.plots import REGION_COLORS, save_png

    fig, axes = plt.subplots(1, len(ROWS), figsize=(3.2 * len(ROWS), 4.2), sharey=True)
    for ax, region in zip(axes, ROWS, strict=True):
        rows = pairs[(pairs["region"] == region) & pairs["kept"]]
        s = regions[region]
        color = REGION_COLORS.get(region, "#333333")
        for _, row in rows.iterrows():
            ax.plot([0, 1], [row["a"], row["b"]], "-", color="#9a9a9a", lw=0.8, zorder=1)
        ax.scatter(np.zeros(len(rows)), rows["a"], s=18, color=color, zorder=2)
        ax.scatter(np.ones(len(rows)), rows["b"], s=18, color=color, zorder=2)
        if s["n"]:
            ax.plot([0, 1], [s["mean_a"], s["mean_b"]], "k-", lw=2.2, marker="D", zorder=3,
                    label="mean")
            title = (f"{region}: {labels[1]} - {labels[0]} = {s['mean_diff']:+.3f}\n"
                     f"95% CI [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], "
                     f"p = {s['p_wilcoxon']:.2g}, n = {s['n']}")
        else:
            title = f"{region}: no finite pair"
        ax.set_title(title, fontsize=9)
        ax.set_xticks([0, 1], labels)
        ax.set_xlim(-0.4, 1.4)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(f"{metric} per subject")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi)


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """The comparison as a plain-text table (what `brainseg compare` prints)."""
    head = (f"{result['metric']}: B - A over {result['n_subjects']} paired subjects "
            f"(paired bootstrap {result['bootstrap']}, seed {result['seed']}; "
            f"Wilcoxon signed-rank, two-sided)\n"
            f"A ({result['a']['label']}): {result['a']['source']}\n"
            f"B ({result['b']['label']}): {result['b']['source']}\n")
    level = f"{round(100 * result['confidence'])}% CI"
    lines = [f"{'region':<7}{'n':>4}{'mean A':>10}{'mean B':>10}{'B - A':>10}"
             f"{level:>22}{'p':>9}{'B > A':>8}"]
    notes = []
    for region, s in result["regions"].items():
        ci = ("n/a" if s["ci_low"] is None
              else f"[{s['ci_low']:+.4f}, {s['ci_high']:+.4f}]")
        lines.append(f"{region:<7}{s['n']:>4}{_number(s['mean_a'], '.4f'):>10}"
                     f"{_number(s['mean_b'], '.4f'):>10}{_number(s['mean_diff'], '+.4f'):>10}"
                     f"{ci:>22}{_number(s['p_wilcoxon'], '.3g'):>9}"
                     f"{str(s['n_higher']) + '/' + str(s['n']):>8}")
        if s["n_dropped"]:
            notes.append(f"{region}: {s['n_dropped']} pair(s) dropped (n/a, NaN or inf "
                         f"in A or B)")
        if s["min_p"] is not None and s["min_p"] > 0.05:
            notes.append(f"{region}: with {s['n_higher'] + s['n_lower']} non-zero "
                         f"differences the exact test's p cannot go below {s['min_p']:.3g}")
    return head + "\n".join(lines + notes) + "\n"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from brainseg.tracking import add_tracking_argument

    sources = ("a folder holding per_subject.csv or reports/per_subject.csv (or the CSV "
               "itself); rev:<REV> for reports/per_subject.csv at a git revision or DVC "
               "experiment of --repo (rev:HEAD~1, rev:main, rev:exp-1a2b3); runs:/<run_id> "
               "for the evaluation/per_subject.csv artifact of an MLflow run")
    parser.add_argument("a", metavar="A", help=f"the reference evaluation: {sources}")
    parser.add_argument("b", metavar="B", help="the evaluation compared with A (B - A is "
                        "reported), in the same forms")
    parser.add_argument("--metric", default="dice",
                        help="metric family: the columns <metric>_{WT,TC,ET} of both tables "
                        "(dice, iou, precision, sensitivity, specificity, accuracy, hd95, "
                        "volume_diff_cm3; default dice)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for comparison.json, deltas.csv and comparison.png "
                        "(default: print the table only)")
    parser.add_argument("--bootstrap", type=_positive, default=10_000,
                        help="paired bootstrap replicates (default 10000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--labels", nargs=2, metavar=("NAME_A", "NAME_B"), default=("A", "B"),
                        help="names of A and B in the table and the figure (default A B)")
    parser.add_argument("--repo", type=Path, default=Path("."),
                        help="git/DVC repository of rev: sources (default: the working "
                        "directory)")
    parser.add_argument("--dpi", type=_positive, default=120, help="figure resolution")
    add_tracking_argument(parser)


def main(args: argparse.Namespace) -> None:
    from brainseg.tracking import tracking_uri

    result = run_compare(args.a, args.b, metric=args.metric, out=args.out,
                         n_boot=args.bootstrap, seed=args.seed, repo=args.repo,
                         tracking_uri=tracking_uri(args.tracking_uri),
                         labels=tuple(args.labels), dpi=args.dpi)
    sys.stdout.write(format_table(result))
