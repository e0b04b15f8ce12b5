"""The synthetic cohort's statistics beside the committed summary of real scans.

For each statistic of `brainseg.data.cohort_stats`: the synthetic mean and std over
subjects, the real ones, and the standardized gap |synthetic mean - real mean| / real std
(how many real between-subject standard deviations apart; undefined where the real std is
0 or unknown). The cohorts' distance is the mean gap over the statistics where it is
defined, overall and per group (intensity, texture, shape).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from brainseg.data.cohort_stats import TISSUES
from brainseg.io.atomic import write_text
from brainseg.reporting.plots import save_png

COLUMNS = ("statistic", "synthetic_n", "synthetic_mean", "synthetic_std", "real_n",
           "real_mean", "real_std", "gap")
GROUPS = ("intensity", "texture", "shape")
SYNTHETIC, REAL = "#1f9bd1", "#e4572e"


def _rounded(x: float | None) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def gap_table(synthetic: dict[str, dict[str, Any]], real: dict[str, dict[str, Any]]
              ) -> list[dict[str, Any]]:
    """One row per statistic both summaries hold (sorted by name), `COLUMNS` as keys.

    Args:
        synthetic, real: `cohort_stats.summarize` outputs (statistic -> {n, mean, std, ...}).
    """
    rows = []
    for name in sorted(synthetic.keys() & real.keys()):
        s, r = synthetic[name], real[name]
        gap = None
        if s["mean"] is not None and r["mean"] is not None and r["std"]:
            gap = abs(s["mean"] - r["mean"]) / r["std"]
        rows.append({"statistic": name, "synthetic_n": s["n"],
                     "synthetic_mean": _rounded(s["mean"]), "synthetic_std": _rounded(s["std"]),
                     "real_n": r["n"], "real_mean": _rounded(r["mean"]),
                     "real_std": _rounded(r["std"]), "gap": _rounded(gap)})
    return rows


def distances(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The mean gap over the rows where it is defined: overall ("all") and per group."""
    out: dict[str, float | None] = {}
    for group in ("all", *GROUPS):
        gaps = [r["gap"] for r in rows if r["gap"] is not None
                and (group == "all" or r["statistic"].startswith(group + "."))]
        out[group] = round(float(np.mean(gaps)), 4) if gaps else None
    return out


def top_gaps(rows: list[dict[str, Any]], n: int = 5) -> list[dict[str, Any]]:
    """The n rows of largest gap (ties by name)."""
    ranked = sorted((r for r in rows if r["gap"] is not None),
                    key=lambda r: (-r["gap"], r["statistic"]))
    return ranked[:n]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """The table as CSV (atomically), `COLUMNS` in order, empty cells for undefined."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    write_text(path, buffer.getvalue())


def _box(ax: plt.Axes, x: float, stats: dict[str, dict[str, Any]], prefix: str,
         colour: str) -> None:
    """A box of the mean (over subjects) quantiles 5/25/50/75/95 at position x."""
    q = [stats.get(f"{prefix}.q{p:02d}", {}).get("mean") for p in (5, 25, 50, 75, 95)]
    if any(v is None for v in q):
        return
    ax.vlines(x, q[0], q[4], color=colour, lw=1)
    ax.add_patch(plt.Rectangle((x - 0.15, q[1]), 0.3, q[3] - q[1], fc=colour, alpha=0.35,
                               ec=colour))
    ax.hlines(q[2], x - 0.15, x + 0.15, color=colour, lw=2)


def plot_intensities(synthetic: dict[str, dict[str, Any]], real: dict[str, dict[str, Any]],
                     modalities: tuple[str, ...], path: Path, dpi: int = 120) -> None:
    """Per modality (rows) and tissue (columns): the intensity quantiles 5/25/50/75/95
    (whiskers, box, line), averaged over subjects, synthetic beside real."""
    fig, axes = plt.subplots(len(modalities), len(TISSUES), squeeze=False, sharey="row",
                             figsize=(2.4 * len(TISSUES), 2.0 * len(modalities)))
    for row, modality in enumerate(modalities):
        for col, tissue in enumerate(TISSUES):
            ax = axes[row, col]
            prefix = f"intensity.{modality}.{tissue}"
            _box(ax, 0.0, synthetic, prefix, SYNTHETIC)
            _box(ax, 1.0, real, prefix, REAL)
            ax.set_xlim(-0.6, 1.6)
            ax.set_xticks([0, 1], ["synthetic", "real"], fontsize=7)
            ax.set_title(f"{modality}: {tissue}", fontsize=9)
    fig.supylabel("intensity after the pipeline's normalization")
    fig.tight_layout()
    save_png(fig, path, dpi)


def plot_gaps(rows: list[dict[str, Any]], path: Path, dpi: int = 120) -> None:
    """Signed standardized differences (synthetic - real) / real std of every texture and
    shape statistic, and of the intensity statistics among the 10 largest gaps."""
    top = {r["statistic"] for r in top_gaps([r for r in rows if
                                             r["statistic"].startswith("intensity.")], 10)}
    shown = [r for r in rows if r["gap"] is not None
             and (not r["statistic"].startswith("intensity.") or r["statistic"] in top)]
    signed = [(r["synthetic_mean"] - r["real_mean"]) / r["real_std"] for r in shown]
    fig, ax = plt.subplots(figsize=(6.5, 0.22 * len(shown) + 1.2))
    y = np.arange(len(shown))
    ax.barh(y, signed, color=[REAL if abs(v) > 2 else SYNTHETIC for v in signed])
    ax.axvspan(-1, 1, color="grey", alpha=0.15, label="within one real std")
    ax.set_yticks(y, [r["statistic"] for r in shown], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("(synthetic mean - real mean) / real std over subjects")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    save_png(fig, path, dpi)
