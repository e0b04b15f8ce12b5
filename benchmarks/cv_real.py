"""Cross-validate training configurations on a real BraTS folder (out-of-fold Dice).

For each configuration (a set of params overrides on top of the real preset,
`workflow/presets/real.yaml`), the pipeline's own commands run: `brainseg download`
(local source), `extract`, `normalize`, `split` (k stratified folds), then for every
fold `brainseg train --fold f` and `brainseg evaluate` of that fold's model on the
fold's held-out subjects (plain threshold, no post-processing), so every subject is
scored once by a model that never saw it. Results (per subject, per fold, pooled, and
the training wall time) go to `benchmarks/results/cv_real.json`, one entry per
configuration; `--table` prints them as the Markdown table of docs/results.md, and
`--paired preset` each configuration's paired difference to the preset, subject by subject.

    python -m benchmarks.cv_real --data ../shared/fixtures/brats18 --config base
    python -m benchmarks.cv_real --table
    python -m benchmarks.cv_real --paired preset
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from filelock import FileLock

from brainseg.params import set_key

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "workflow" / "presets" / "real.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "cv_real.json"
REGIONS = ("WT", "TC", "ET")
log = logging.getLogger("cv_real")
THREADS = "2"  # torch threads of train and evaluate (--threads)

# Every configuration tried, as overrides of the current preset (dotted keys). Keep old
# entries, rewritten against the preset when it changes: the table in docs/results.md lists
# every configuration with its CV Dice.
REGIONS_OUTPUT = {"train.model.output": "regions"}  # the preset before softmax won
CONFIGS: dict[str, dict[str, Any]] = {
    "preset": {},
    "regions": REGIONS_OUTPUT,
    "regions-base16-epochs5": {**REGIONS_OUTPUT, "train.model.base_channels": 16,
                               "train.epochs": 5},
    "regions-tumor50": {**REGIONS_OUTPUT, "train.tumor_fraction": 0.5},
    "tumor50": {"train.tumor_fraction": 0.5},
    "size160-epochs6": {"extract.image_size": 160, "train.epochs": 6},
    "context1": {"train.model.context_slices": 1},
    # the 3D U-Net at the preset's width and the 2D preset's training time on this CPU (about
    # 0.55 s a 64^3 patch on one thread: 400 patches), validated once, at the end
    "3d": {"train.model.dims": 3, "train.batch_size": 2, "train.slices_per_epoch": 40,
           "train.val_every": 10},
    "lr1e-3": {"train.optimizer.lr": 0.001},
    "lr4e-3": {"train.optimizer.lr": 0.004},
    "no-augment": {f"train.augment.{t}.p": 0.0 for t in
                   ("flip", "affine", "gamma", "brightness_contrast", "noise", "blur")},
    "batch8": {"train.batch_size": 8},  # twice the steps of half the batch, same slices
    "depth3": {"train.model.depth": 3},  # one level less (the preset: 4)
    "dice-only": {"train.loss.ce_weight": 0.0},  # the loss without its cross-entropy term
    "ce2": {"train.loss.ce_weight": 2.0},  # twice the cross-entropy of the preset's 1:1
    "uniform": {"train.tumor_fraction": 0.0},  # slices drawn uniformly, no tumour oversampling
    "tumor66": {"train.tumor_fraction": 0.66},  # two thirds of each batch from tumour slices
    "epochs20": {"train.epochs": 20},  # twice the preset's training budget, all else the same
}


def config_params(name: str, data: Path) -> dict[str, Any]:
    """The preset with the overrides of configuration `name`, on the local folder `data`."""
    params = yaml.safe_load(PRESET.read_text())
    params["download"].update(source="local", path=str(data), layout="auto")
    for key, value in CONFIGS[name].items():
        set_key(params, key, value)
    return params


def brainseg(*args: str) -> float:
    """Run one `brainseg` command; returns its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(["brainseg", "-q", *args], check=True)
    return time.perf_counter() - start


def prepare(params: dict[str, Any], work: Path) -> tuple[Path, Path, Path]:
    """raw, slices and splits of the cohort for these data params (shared between configs)."""
    key = json.dumps([params["download"], params["extract"], params["normalize"],
                      params["split"], params["base"]], sort_keys=True)
    data = work / "data" / hashlib.sha256(key.encode()).hexdigest()[:10]
    raw, slices, splits = data / "raw", data / "slices", data / "splits.csv"
    data.mkdir(parents=True, exist_ok=True)
    pfile = data / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    if not (raw / "manifest.csv").is_file():
        brainseg("download", "--params", str(pfile), "--out-dir", str(raw), "--jobs", "2")
    if not slices.is_dir():
        brainseg("extract", "--params", str(pfile), "--raw-dir", str(raw),
                 "--out-dir", str(data / "extracted"), "--jobs", "2")
        brainseg("normalize", "--params", str(pfile), "--in-dir", str(data / "extracted"),
                 "--out-dir", str(slices), "--jobs", "2")
    if not splits.is_file():
        brainseg("split", "--params", str(pfile), "--manifest", str(raw / "manifest.csv"),
                 "--out", str(splits))
    return raw, slices, splits


def run_config(name: str, data: Path, work: Path) -> dict[str, Any]:
    """Cross-validate configuration `name` on every fold; its summary (see `summarize`)."""
    per_subject, train_s, eval_s, _ = run_folds(name, data, work)
    return summarize(name, per_subject, train_s, eval_s)


def held_out_splits(splits: pd.DataFrame, fold: int, path: Path) -> Path:
    """Write the fold's held-out subjects as the test split of a plain (fold-less) splits
    table at `path` (what `evaluate` scores); returns `path`."""
    held = splits.drop(columns="fold")
    held["split"] = np.where(splits["fold"] == fold, "test", "train")
    held.to_csv(path, index=False)
    return path


def run_folds(name: str, data: Path, work: Path, folds: list[int] | None = None
              ) -> tuple[pd.DataFrame, list[float], list[float], Path]:
    """Train and score configuration `name` on `folds` (default: all).

    Returns:
        (every column of the folds' per_subject.csv with a `fold` column, training
        seconds per fold, evaluation seconds per fold, the run folder: fold<f>/model.pt).
    """
    params = config_params(name, data)
    raw, slices, splits_path = prepare(params, work)
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    out = work / "runs" / f"{name}-{digest}"  # finished folds are reused for the same params only
    out.mkdir(parents=True, exist_ok=True)
    pfile = out / "params.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    splits = pd.read_csv(splits_path)
    if folds is None:
        folds = list(range(int(splits["fold"].max()) + 1))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    rows, train_s, eval_s = [], [], []
    for fold in folds:
        fdir = out / f"fold{fold}"
        fdir.mkdir(exist_ok=True)
        model = fdir / "model.pt"
        timing = fdir / "train_s.txt"  # a finished fold is kept when the harness reruns
        if not timing.is_file():
            seconds = brainseg(
                "train", "--params", str(pfile), "--slices-dir", str(slices), "--splits",
                str(splits_path), "--fold", str(fold), "--model-out", str(model),
                "--history-out", str(fdir / "history.csv"), "--run-info-out",
                str(fdir / "run.json"), "--tracking-uri", uri, "--threads", THREADS)
            timing.write_text(f"{seconds:.1f}\n")
        train_s.append(float(timing.read_text()))
        held_out_splits(splits, fold, fdir / "splits.csv")
        eval_s.append(brainseg(
            "evaluate", "--params", str(pfile), "--model", str(model), "--splits",
            str(fdir / "splits.csv"), "--raw-dir", str(raw), "--pred-dir", str(fdir / "pred"),
            "--per-subject-out", str(fdir / "per_subject.csv"), "--metrics-out",
            str(fdir / "metrics.json"), "--tracking-uri", uri, "--threads", THREADS))
        table = pd.read_csv(fdir / "per_subject.csv").assign(fold=fold)
        rows.append(table)
        log.info("%s fold %d: train %.0f s, Dice %s", name, fold, train_s[-1],
                 {r: round(table[f"dice_{r}"].mean(), 3) for r in REGIONS})
    return pd.concat(rows, ignore_index=True), train_s, eval_s, out


def summarize(name: str, per_subject: pd.DataFrame, train_s: list[float],
              eval_s: list[float]) -> dict[str, Any]:
    def stats(col: str) -> dict[str, float]:
        x = per_subject[col].to_numpy(float)
        return {"mean": float(np.mean(x)), "std": float(np.std(x, ddof=1)),
                "median": float(np.median(x)), "min": float(np.min(x))}

    folds = per_subject.groupby("fold")[[f"dice_{r}" for r in REGIONS]].mean()
    return {
        "config": name,
        "overrides": CONFIGS[name],
        "n_subjects": len(per_subject),
        "dice": {r: stats(f"dice_{r}") for r in REGIONS},
        "hd95": {r: stats(f"hd95_{r}") for r in REGIONS},
        "dice_mean": float(per_subject[[f"dice_{r}" for r in REGIONS]].mean(axis=1).mean()),
        "fold_dice": {r: folds[f"dice_{r}"].round(4).tolist() for r in REGIONS},
        "train_s": [round(t, 1) for t in train_s],
        "threads": int(THREADS),
        "evaluate_s": [round(t, 1) for t in eval_s],
        "per_subject": per_subject[["subject", "fold", *(f"dice_{r}" for r in REGIONS),
                                    *(f"hd95_{r}" for r in REGIONS)]].round(4)
        .to_dict(orient="records"),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def record(result: dict[str, Any], path: Path = RESULTS) -> None:
    with FileLock(str(path.with_suffix(".lock"))):  # harnesses may run side by side
        _record(result, path)


def _record(result: dict[str, Any], path: Path) -> None:
    results = json.loads(path.read_text()) if path.is_file() else {}
    results[result["config"]] = result
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def table(path: Path = RESULTS) -> str:
    results = json.loads(path.read_text())
    lines = ["| configuration | overrides | WT | TC | ET | mean | train (all folds) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(results.values(), key=lambda r: -r["dice_mean"]):
        cells = [f"{r['dice'][g]['mean']:.3f} ± {r['dice'][g]['std']:.3f}" for g in REGIONS]
        over = ", ".join(f"`{k}: {v}`" for k, v in r["overrides"].items()) or "(preset)"
        lines.append(f"| {r['config']} | {over} | {' | '.join(cells)} | {r['dice_mean']:.3f} "
                     f"| {sum(r['train_s']) / 60:.1f} min, {r.get('threads', 2)} thread(s) |")
    return "\n".join(lines)


def paired_table(path: Path = RESULTS, reference: str = "preset") -> str:
    """Each configuration's out-of-fold Dice minus `reference`'s, paired subject by subject:
    mean ± standard error of the difference (per region, and of the three regions' mean)
    and on how many subjects it is better. Configurations are compared on the subjects
    both scored."""
    results = json.loads(path.read_text())
    if reference not in results:
        raise SystemExit(f"{path}: no configuration {reference!r} to pair with "
                         f"(it holds {', '.join(sorted(results))})")

    def dice(name: str) -> pd.DataFrame:
        table = pd.DataFrame(results[name]["per_subject"]).set_index("subject")
        table = table[[f"dice_{r}" for r in REGIONS]].set_axis(REGIONS, axis=1)
        return table.assign(mean=table.mean(axis=1))

    ref = dice(reference)
    heads = " | ".join(f"{c} - {reference}" for c in (*REGIONS, "mean"))
    lines = [f"| configuration | subjects | {heads} |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name in sorted(set(results) - {reference}, key=lambda n: -results[n]["dice_mean"]):
        diff = (dice(name) - ref).dropna()
        n = len(diff)
        cells = [f"{diff[c].mean():+.3f} ± {diff[c].std(ddof=1) / np.sqrt(n):.3f} "
                 f"({int((diff[c] > 0).sum())}/{n} better)" for c in (*REGIONS, "mean")]
        lines.append(f"| {name} | {n} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, help="a real BraTS folder (any supported layout)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/brainseg-cv"),
                        help="work folder (data, runs, MLflow store); kept between calls")
    parser.add_argument("--config", action="append", choices=sorted(CONFIGS),
                        help="configuration to cross-validate (repeatable)")
    parser.add_argument("--threads", default="2", help="torch threads per command (default 2)")
    parser.add_argument("--table", action="store_true", help="print the results table")
    parser.add_argument("--paired", metavar="NAME",
                        help="print each configuration's paired difference to NAME (mean ± "
                             "standard error over the subjects, and how many it betters)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="results file (default benchmarks/results/cv_real.json); another "
                             "one keeps configurations compared on another machine apart, "
                             "since weights depend on the CPU")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    global THREADS
    THREADS = args.threads
    if args.table or args.paired:
        print(paired_table(args.results, args.paired) if args.paired  # noqa: T201
              else table(args.results))
        return
    if not args.data or not args.config:
        parser.error("--data and --config are required (or --table, or --paired)")
    for name in args.config:
        result = run_config(name, args.data.resolve(), args.work.resolve())
        record(result, args.results)
        log.info("%s: CV Dice %s, train %.1f min", name,
                 {r: round(result["dice"][r]["mean"], 3) for r in REGIONS},
                 sum(result["train_s"]) / 60)


if __name__ == "__main__":
    main()
