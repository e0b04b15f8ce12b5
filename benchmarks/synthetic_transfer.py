"""Does a synthetic cohort closer to real scans train a model that segments real scans better?

For each generator setting (overrides of `download.synthetic` on top of params.yaml) and
each seed (`base.seed`: the synthetic subjects, the split, the weights and the
augmentation), the pipeline's own commands run the default job: `brainseg download`
(synthetic), `extract`, `normalize`, `split`, `train`; then `brainseg realism --model`
scores that model on the held-out half of the real cohort, the subjects the generator's
knobs were not tuned on (the `held_out` list in the provenance of `--real-stats`,
`workflow/real_stats/brats18_tune.json`: subjects 11-20 of ../shared/fixtures/brats18).
Threshold 0.5, no post-processing. Results (per subject and per run, with the training
wall time) go to `benchmarks/results/synthetic_transfer.json`; `--table` prints the
settings' mean Dice over seeds and the paired difference of each setting to `default`.

    python -m benchmarks.synthetic_transfer --real ../shared/fixtures/brats18 \\
        --setting default --setting tuned --seed 42 --seed 43 --threads 1
    python -m benchmarks.synthetic_transfer --table

One training moves the real-scan score by about 0.1 (docs/results.md): compare settings
over several seeds, never on one run.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from filelock import FileLock

from benchmarks.cv_real import brainseg
from brainseg.params import set_key

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "synthetic_transfer.json"
REAL_STATS = ROOT / "workflow" / "real_stats" / "brats18_tune.json"
REGIONS = ("WT", "TC", "ET")
log = logging.getLogger("synthetic_transfer")

# Generator settings, as overrides of params.yaml's download.synthetic. `tuned` is the setting
# of smallest cohort distance in docs/results.md ("What the contrast knobs change").
SETTINGS: dict[str, dict[str, Any]] = {
    "default": {},
    "tuned": {"edema_falloff": 0.4, "necrosis_t1_contrast": 0.6,
              "enhancement_contrast": 0.6, "texture": 0.03},
}


def held_out(real: Path, real_stats: Path) -> list[Path]:
    """The real subject folders the real summary was not fitted on."""
    names = json.loads(real_stats.read_text())["provenance"]["held_out"]
    folders = [real / name for name in names]
    missing = [f.name for f in folders if not f.is_dir()]
    if missing:
        raise SystemExit(f"{real}: no folder for the held-out subjects {missing} of {real_stats}")
    return folders


def run_one(setting: str, seed: int, real: list[Path], work: Path, threads: str
            ) -> dict[str, Any]:
    """The default job on one setting and seed, scored on the `real` subjects."""
    out = work / f"{setting}-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    set_key(params, "base.seed", seed)
    for key, value in SETTINGS[setting].items():
        set_key(params, f"download.synthetic.{key}", value)
    pfile = out / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    p, raw, slices = str(pfile), out / "raw", out / "slices"
    if not (raw / "manifest.csv").is_file():
        brainseg("download", "--params", p, "--out-dir", str(raw), "--jobs", threads)
    if not slices.is_dir():
        brainseg("extract", "--params", p, "--raw-dir", str(raw), "--out-dir",
                 str(out / "extracted"), "--jobs", threads)
        brainseg("normalize", "--params", p, "--in-dir", str(out / "extracted"),
                 "--out-dir", str(slices), "--jobs", threads)
    splits = out / "splits.csv"
    if not splits.is_file():
        brainseg("split", "--params", p, "--manifest", str(raw / "manifest.csv"),
                 "--out", str(splits))
    model, timing = out / "models" / "model.pt", out / "train_s.txt"
    if not timing.is_file():
        seconds = brainseg("train", "--params", p, "--slices-dir", str(slices), "--splits",
                           str(splits), "--model-out", str(model), "--history-out",
                           str(out / "history.csv"), "--run-info-out", str(out / "run.json"),
                           "--tracking-uri", f"sqlite:///{work / 'mlflow.db'}",
                           "--threads", threads)
        timing.write_text(f"{seconds:.1f}\n")
    links = out / "real"
    links.mkdir(exist_ok=True)
    for folder in real:
        if not (links / folder.name).exists():
            (links / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
    summary = out / "realism.json"
    brainseg("realism", "--params", p, "--raw-dir", str(raw), "--real", str(links),
             "--model", str(model), "--out-dir", str(out / "realism"),
             "--summary-out", str(summary))
    scores = json.loads(summary.read_text())["real_scores"]
    per_subject = [{k: s[k] for k in ("subject", *(f"dice_{r}" for r in REGIONS))}
                   for s in scores["per_subject"]]
    dice = {r: float(np.mean([s[f"dice_{r}"] for s in per_subject])) for r in REGIONS}
    return {"setting": setting, "seed": seed, "overrides": SETTINGS[setting],
            "threads": int(threads), "train_s": float(timing.read_text()),
            "dice": dice, "dice_mean": float(np.mean(list(dice.values()))),
            "per_subject": per_subject}


def table(results: dict[str, Any]) -> str:
    """Markdown: each setting's Dice (mean over its seeds of the subjects' mean), and its
    paired difference to `default` over the seeds both have."""
    runs = results.get("runs", {})
    lines = ["| setting | seeds | Dice WT | TC | ET | mean | − default (paired by seed) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    by_setting: dict[str, dict[int, dict]] = {}
    for run in runs.values():
        by_setting.setdefault(run["setting"], {})[run["seed"]] = run
    base = by_setting.get("default", {})
    for setting, seeds in sorted(by_setting.items(), key=lambda kv: kv[0] != "default"):
        mean = {r: np.mean([s["dice"][r] for s in seeds.values()]) for r in REGIONS}
        overall = np.mean([s["dice_mean"] for s in seeds.values()])
        shared = sorted(set(seeds) & set(base))
        diffs = [seeds[k]["dice_mean"] - base[k]["dice_mean"] for k in shared]
        paired = ("" if setting == "default" or not diffs else
                  f"{np.mean(diffs):+.3f} ({', '.join(f'{d:+.3f}' for d in diffs)})")
        lines.append(f"| {setting} | {', '.join(map(str, sorted(seeds)))} | "
                     + " | ".join(f"{mean[r]:.3f}" for r in REGIONS)
                     + f" | {overall:.3f} | {paired} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=ROOT.parent / "shared" / "fixtures" /
                        "brats18", help="the real cohort (default ../shared/fixtures/brats18)")
    parser.add_argument("--real-stats", type=Path, default=REAL_STATS,
                        help="the real summary whose held-out subjects are scored")
    parser.add_argument("--setting", action="append", choices=sorted(SETTINGS),
                        help="generator setting (repeatable; default: all)")
    parser.add_argument("--seed", action="append", type=int,
                        help="base.seed (repeatable; default: 42)")
    parser.add_argument("--threads", default="2", help="torch threads and jobs per command")
    parser.add_argument("--work", type=Path, default=Path("/tmp/brainseg-transfer"),
                        help="work folder (cohorts, models, MLflow store); kept between calls")
    parser.add_argument("--results", type=Path, default=RESULTS, help="results JSON")
    parser.add_argument("--table", action="store_true", help="print the results table")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.table:
        print(table(json.loads(args.results.read_text())))  # noqa: T201 - the table is the output
        return
    real = held_out(args.real.resolve(), args.real_stats)
    for setting in args.setting or sorted(SETTINGS):
        for seed in args.seed or [42]:
            start = time.perf_counter()
            result = run_one(setting, seed, real, args.work.resolve(), args.threads)
            result["date"] = time.strftime("%Y-%m-%d")
            with FileLock(str(args.results) + ".lock"):  # runs in parallel share the file
                data = json.loads(args.results.read_text()) if args.results.is_file() else {}
                data.setdefault("runs", {})[f"{setting}-seed{seed}"] = result
                tmp = args.results.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(data, indent=1) + "\n")
                tmp.replace(args.results)
            log.info("%s seed %d: Dice %s (mean %.3f) in %.0f s", setting, seed,
                     {r: round(v, 3) for r, v in result["dice"].items()}, result["dice_mean"],
                     time.perf_counter() - start)


if __name__ == "__main__":
    main()
