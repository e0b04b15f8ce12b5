"""Peers on real scans: brainseg's real preset against nnU-Net v2 `2d`, by the same folds, at
equal training wall time, scored by our evaluation.

Run: make bench-peers-real                       (5 folds, about 2 h on one core)
     python -m benchmarks.bench_peers_real --data ../shared/fixtures/brats18 --folds 0 1
                                                 (quick mode: two folds, stated as such)

On the real folder `--data` (any supported layout) and the real preset's split
(`workflow/presets/real.yaml`: 5 stratified folds of subjects), for each fold f:

- **brainseg**: `brainseg train --fold f` of the preset, scored by `brainseg evaluate` on
  the fold's held-out subjects, exactly as benchmarks.cv_real does (and reusing its work
  folder: a fold trained there is not trained again). Plain threshold, no post-processing.
- **nnU-Net v2 2d**, through its own commands: the subjects converted region-based as
  nnU-Net's BraTS conversion does (WT, TC, ET as sigmoid regions), `nnUNetv2_plan_and_
  preprocess -c 2d`, our folds written as its `splits_final.json`, then `nnUNetv2_train
  DATASET 2d f -tr nnUNetTrainer_brainseg_e<E>_i<I> -device cpu`: nnU-Net's trainer with only
  its training length changed (E epochs of I iterations, its schedule, augmentation,
  batch and patch from its plans untouched), found by nnU-Net through `nnUNet_extTrainer`.
  E and I are set so that its training command takes brainseg's training time of that fold:
  a timed probe (two epochs of a few iterations) gives the seconds per iteration and of
  start-up (or `--per-iteration` from an earlier probe). `nnUNetv2_predict --disable_tta`
  (sliding window with Gaussian weighting; no mirroring, as our plain evaluation has no
  flip TTA) then segments the fold's held-out subjects, and those label maps are scored by
  our evaluation (whole-volume Dice and HD95, lesion-wise Dice per region).
- **MONAI BasicUNet (2D)** through our training loop (`--peers monai`), as `make bench-peers`
  trains it on the synthetic cohort: the preset's params with only the network changed, its
  10 epochs and schedule kept, and the slices per epoch set so that its training takes ours'
  time of that fold (two short timed probes give its seconds per slice and per epoch
  overhead, in CPU seconds of its process, robust to other load with `--threads 1`); scored
  by the same `evaluate` on the fold's held-out subjects.
- **prediction time and memory**: one held-out subject of the first fold as a fresh command
  (`brainseg predict` against `nnUNetv2_predict`, with its default mirroring and without),
  and per subject in one command over a fold's held-out subjects.

Both tools get the same CPUs: the benchmark runs on the cores it may use (`taskset -c 0`
to give it one), `--threads` torch threads for ours, nnU-Net's trainer set to the same
count (nnUNetv2_train alone would take every core of the machine), one data-augmentation
process (nnU-Net's in the main process) for both. Results: section "peers_real" of
benchmarks/results/latest.json (the docs table: `python -m benchmarks.report`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks import cv_real
from benchmarks import nnunet_peer as nnunet
from benchmarks.common import LATEST, Figure, record, setup_logging

log = logging.getLogger("benchmarks.peers_real")

DATASET_ID = 988
DATASET = f"Dataset{DATASET_ID}_BrainsegBraTS"
REGIONS = ("WT", "TC", "ET")
METRICS = ("dice", "hd95", "lesionwise_dice")
PROBE_ITERATIONS = 4
ITERATIONS_PER_EPOCH = 10  # nnU-Net's poly schedule steps per epoch: >= 10 epochs in a budget
DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "brats18"


# --- brainseg -----------------------------------------------------------------------------


def run_brainseg(data: Path, work: Path, folds: list[int]) -> dict[str, Any]:
    """The real preset by cv_real on `folds`: per-subject scores, training seconds per fold,
    and the run folder (fold<f>/model.pt)."""
    per_subject, train_s, _, run = cv_real.run_folds("preset", data, work / "cv", folds)
    return {"per_subject": per_subject, "train_s": dict(zip(folds, train_s, strict=True)),
            "run": run}


# --- nnU-Net --------------------------------------------------------------------------------


def nnunet_folds(splits: pd.DataFrame) -> list[dict[str, list[str]]]:
    """Every fold of our splits table as nnU-Net's {"train", "val"} subject lists."""
    k = int(splits["fold"].max()) + 1
    return [{"train": sorted(splits.loc[splits["fold"] != f, "subject"]),
             "val": sorted(splits.loc[splits["fold"] == f, "subject"])} for f in range(k)]


def prepare_nnunet(raw: Path, splits: pd.DataFrame, work: Path) -> float:
    """Convert, plan and preprocess (2d) once; write our folds; preprocessing seconds."""
    done = work / "preprocess_s.txt"
    if done.is_file():
        return float(done.read_text())
    for sub in ("nnUNet_raw", "nnUNet_preprocessed"):
        shutil.rmtree(work / sub, ignore_errors=True)
    nnunet.to_raw(raw, work / "nnUNet_raw", DATASET, labels="regions")
    seconds = nnunet.run([*nnunet.executable("nnUNetv2_plan_and_preprocess"), "-d",
                          str(DATASET_ID),
                          "-c", "2d", "-np", "1", "-npfp", "1"], work,
                         work / "plan_and_preprocess.log").seconds
    nnunet.write_splits(work / "nnUNet_preprocessed" / DATASET, nnunet_folds(splits))
    done.write_text(f"{seconds:.1f}\n")
    return seconds


def train_nnunet(work: Path, fold: int, epochs: int, iterations: int,
                 plans: str = "nnUNetPlans") -> dict[str, Any]:
    """`nnUNetv2_train` of one fold with the budgeted trainer; its timings and name."""
    name = nnunet.write_trainer(work / "trainers", epochs, iterations)
    out = work / "nnUNet_results" / DATASET / f"{name}__{plans}__2d" / f"fold_{fold}"
    timing_file = out / "brainseg_timing.json"
    if not (timing_file.is_file() and "command_s" in json.loads(timing_file.read_text())):
        shutil.rmtree(out, ignore_errors=True)
        done = nnunet.run([*nnunet.executable("nnUNetv2_train"), str(DATASET_ID), "2d",
                           str(fold), "-tr", name, "-p", plans, "-device", "cpu"], work,
                          work / f"train_{name}_{plans}_fold{fold}.log", augment_processes=0)
        timing = json.loads(timing_file.read_text())
        timing.update(command_s=done.seconds, max_rss_mib=done.max_rss_mib)
        timing_file.write_text(json.dumps(timing))
    return {**json.loads(timing_file.read_text()), "trainer": name, "plans": plans}


def calibrate(work: Path, fold: int, plans: str) -> tuple[float, float]:
    """(seconds per training iteration, start-up seconds of the first epoch) of nnU-Net 2d
    here, from a probe of two epochs (the second gives the iteration, validation included)."""
    probe = train_nnunet(work, fold, epochs=2, iterations=PROBE_ITERATIONS, plans=plans)
    per_iteration = probe["epochs_s"][-1] / PROBE_ITERATIONS
    startup = probe["epochs_s"][0] - probe["epochs_s"][-1]
    log.info("nnU-Net probe: epochs %s s -> %.1f s per iteration, %.0f s of start-up",
             probe["epochs_s"], per_iteration, startup)
    return per_iteration, startup


def budget(seconds: float, per_iteration: float, startup: float) -> tuple[int, int]:
    """(epochs, iterations per epoch) filling `seconds` of nnU-Net's training loop, its
    start-up included (at least one iteration)."""
    total = max(1, round((seconds - startup) / per_iteration))
    if total < ITERATIONS_PER_EPOCH:
        return total, 1
    return round(total / ITERATIONS_PER_EPOCH), ITERATIONS_PER_EPOCH


def nnunet_inputs(raw: Path, subjects: list[str], folder: Path) -> Path:
    """nnU-Net's input folder for `subjects`: <case>_<channel>.nii.gz links."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for subject in subjects:
        for k, modality in enumerate(nnunet.MODALITIES):
            (folder / f"{subject}_{k:04d}.nii.gz").symlink_to(
                (raw / subject / f"{subject}_{modality}.nii.gz").resolve())
    return folder


def predict_nnunet(work: Path, raw: Path, subjects: list[str], fold: int, run: dict[str, Any],
                   name: str, tta: bool = False) -> tuple[Path, nnunet.Measured]:
    """`nnUNetv2_predict` of `subjects` with fold `fold`'s model; (output folder, time)."""
    inputs = nnunet_inputs(raw, subjects, work / "predict" / f"{name}-in")
    out = work / "predict" / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*nnunet.executable("nnUNetv2_predict"), "-i", str(inputs), "-o", str(out), "-d",
           str(DATASET_ID), "-c", "2d", "-f", str(fold), "-tr", run["trainer"], "-p",
           run["plans"], "-device", "cpu", "-npp", "1", "-nps", "1"]
    return out, nnunet.run(cmd + ([] if tta else ["--disable_tta"]), work,
                           work / "predict" / f"{name}.log")


def score_folder(pred_dir: Path, raw: Path, subjects: list[str]) -> pd.DataFrame:
    """Our scores of nnU-Net's region-based predictions `<pred_dir>/<subject>.nii.gz`."""
    import nibabel as nib

    from brainseg.data.labels import REGIONS as ALL
    from brainseg.evaluation.evaluate import read_native, score_labels

    rows = []
    for subject in subjects:
        loaded = read_native(raw / subject)
        labels = nnunet.to_brats(np.asarray(nib.load(pred_dir / f"{subject}.nii.gz").dataobj))
        rows.append({"subject": subject, **score_labels(labels, loaded, ALL)})
    return pd.DataFrame(rows)


def timed(cmd: list[Any]) -> nnunet.Measured:
    log.info("$ %s", " ".join(map(str, cmd)))
    return nnunet.measure(list(map(str, cmd)))


def predict_ours(raw: Path, subjects: list[str], model: Path, work: Path,
                 threads: int) -> dict[str, float]:
    """`brainseg predict`: seconds of a fresh command on subjects[0], and per subject in one
    command over all of them."""
    batch = work / "predict" / "ours-in"
    shutil.rmtree(batch, ignore_errors=True)
    batch.mkdir(parents=True)
    for subject in subjects:
        (batch / subject).symlink_to((raw / subject).resolve())
    cmd = [sys.executable, "-m", "brainseg", "-q", "predict", "--model", model, "--threads",
           threads]
    out = work / "predict" / "ours"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    fresh = timed([*cmd, "--input", raw / subjects[0], "--output", out / "one.nii.gz"])
    batch_run = timed([*cmd, "--input", batch, "--output", out / "all"])
    return {"ours_fresh_s": fresh.seconds, "ours_batch_s": batch_run.seconds / len(subjects),
            "ours_max_rss_mib": max(fresh.max_rss_mib, batch_run.max_rss_mib)}


# --- MONAI through our loop -----------------------------------------------------------------

MONAI_ARCH = "monai_basicunet"
MONAI_PROBE_SLICES = (64, 192)  # two one-epoch probes: their difference gives s per slice


def monai_params(params: dict[str, Any], slices_per_epoch: int, epochs: int | None = None
                 ) -> dict[str, Any]:
    """The preset's params with MONAI's BasicUNet (no deep supervision: one output) and
    `slices_per_epoch` slices per epoch (and `epochs`, default the preset's)."""
    from benchmarks.bench_peers import peer_params

    out = peer_params(params, MONAI_ARCH, epochs or params["train"]["epochs"])
    out["train"]["slices_per_epoch"] = slices_per_epoch
    out["train"]["model"]["deep_supervision"] = 0
    return out


def monai_slices(budget: float, epochs: int, validations: int, probes: dict[int, float],
                 batch: int) -> tuple[int, float, float]:
    """(slices per epoch filling `budget` seconds, seconds per slice, overhead seconds per
    validated epoch) from one-epoch probes {slices: seconds} (each validated once)."""
    (n1, t1), (n2, t2) = sorted(probes.items())
    per_slice = max((t2 - t1) / (n2 - n1), 1e-6)
    overhead = max(t1 - n1 * per_slice, 0.0)
    slices = (budget - validations * overhead) / (epochs * per_slice)
    return max(batch, round(slices / batch) * batch), per_slice, overhead


def run_monai(params: dict[str, Any], raw: Path, slices: Path, splits_path: Path,
              folds: list[int], budgets: dict[int, float], work: Path,
              threads: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    """MONAI's BasicUNet trained per fold for `budgets[fold]` seconds by our loop, scored by
    our `evaluate` on the fold's held-out subjects; (per-subject scores, timings).

    Its probes and training are timed in CPU seconds of this process (one torch thread:
    about ours' wall seconds on an idle core), so that other load on the machine neither
    shrinks its budget nor counts against it."""
    import time

    from benchmarks.bench_peers import PEERS, warm_tracking
    from brainseg.evaluation.evaluate import run_evaluate
    from brainseg.models.unet import register_arch
    from brainseg.runtime import set_threads
    from brainseg.training.train import run_train

    nnunet.declare_torchvision_ops()
    register_arch(MONAI_ARCH, PEERS[MONAI_ARCH][1])
    set_threads(threads)
    splits = pd.read_csv(splits_path)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    warm_tracking(uri)
    epochs = int(params["train"]["epochs"])
    validations = len({*range(params["train"]["val_every"] - 1, epochs,
                              params["train"]["val_every"]), epochs - 1})

    def train(p: dict[str, Any], out: Path, fold: int) -> float:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        start = time.process_time()  # CPU seconds: a loaded machine does not shrink them
        run_train(params=p, slices_dir=slices, splits=splits_path, model_out=out / "model.pt",
                  history_out=out / "history.csv", run_info_out=out / "run_info.json",
                  tracking_uri=uri, fold=fold)
        return time.process_time() - start

    rows, timing = [], {"slices_per_epoch": {}, "train_s": {}, "per_slice_s": {},
                        "overhead_s": {}, "epochs": epochs}
    for fold in folds:
        fdir = work / "monai" / f"fold{fold}"
        probes = {n: train(monai_params(params, n, epochs=1), fdir / f"probe{n}", fold)
                  for n in MONAI_PROBE_SLICES}
        n, per_slice, overhead = monai_slices(budgets[fold], epochs, validations, probes,
                                              int(params["train"]["batch_size"]))
        log.info("MONAI fold %d: %.3f s per slice, %.1f s per validated epoch -> %d slices "
                 "per epoch for %.0f s", fold, per_slice, overhead, n, budgets[fold])
        seconds = train(monai_params(params, n), fdir / "run", fold)
        held = cv_real.held_out_splits(splits, fold, fdir / "splits.csv")
        run_evaluate(params=monai_params(params, n), model=fdir / "run" / "model.pt",
                     splits=held, raw_dir=raw, pred_dir=fdir / "pred",
                     per_subject_out=fdir / "per_subject.csv",
                     metrics_out=fdir / "metrics.json", device="cpu")
        table = pd.read_csv(fdir / "per_subject.csv").assign(fold=fold)
        rows.append(table)
        for key, value in (("slices_per_epoch", n), ("train_s", seconds),
                           ("per_slice_s", per_slice), ("overhead_s", overhead)):
            timing[key][fold] = value
        log.info("MONAI fold %d: training %.0f s (ours %.0f s), Dice %s", fold, seconds,
                 budgets[fold], {r: round(table[f"dice_{r}"].mean(), 3) for r in REGIONS})
    return pd.concat(rows, ignore_index=True), timing


def recorded_ours(folds: list[int]) -> dict[str, Any]:
    """Ours' per-subject scores and training seconds of `folds` from the recorded peers_real
    section (`--reuse-ours`), refused unless it holds exactly those folds."""
    from benchmarks.common import load_latest

    section = load_latest().get("sections", {}).get("peers_real")
    if section is None or sorted(section.get("folds", [])) != sorted(folds):
        raise SystemExit(f"--reuse-ours: {LATEST}: no peers_real section of folds {folds} "
                         "(run without --reuse-ours)")
    timing = next(f["extra"] for f in section["figures"] if f["key"] == "peers_real.train_s")
    return {"per_subject": pd.DataFrame(section["per_subject"]["brainseg"]),
            "train_s": dict(zip(section["folds"], timing["ours_train_s"], strict=True)),
            "machine": section["machine"], "measured": section["measured"]}


# --- figures --------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float]:
    x = np.asarray(values, float)
    x = x[np.isfinite(x)]
    return {"mean": float(x.mean()), "std": float(x.std(ddof=1)) if len(x) > 1 else 0.0}


def score_figures(ours: pd.DataFrame, theirs: pd.DataFrame, folds: list[int], section: str,
                  peer: str, command: str) -> list[Figure]:
    """Per metric and region: ours' mean over folds of the fold means (± std over folds)
    against the peer's, keys `<section>.<metric>.<region>`."""
    out = []
    quick = "" if len(folds) >= 5 else f" (quick mode: folds {folds})"
    short = peer.split()[0]
    for metric in METRICS:
        for region in REGIONS:
            col = f"{metric}_{region}"
            a = ours[ours["fold"].isin(folds)].groupby("fold")[col].mean().tolist()
            b = theirs.groupby("fold")[col].mean().tolist()
            sa, sb = stats(a), stats(b)
            higher = metric != "hd95"
            met = (sa["mean"] >= sb["mean"]) if higher else (sa["mean"] <= sb["mean"])
            out.append(Figure(
                key=f"{section}.{metric}.{region}",
                label=f"{metric} {region}: brainseg real preset vs {peer}" + quick,
                value=sa["mean"], unit="mm" if metric == "hd95" else "", reference=sb["mean"],
                reference_label=peer, ratio=sa["mean"] / sb["mean"]
                if sb["mean"] else None, ratio_label=f"ours / {short}",
                target=f">= {short}" if higher else f"<= {short}", met=met, repeats=len(folds),
                command=command,
                note=f"mean over folds ± std: ours {sa['mean']:.3f} ± {sa['std']:.3f}, "
                     f"{short} {sb['mean']:.3f} ± {sb['std']:.3f}",
                extra={"ours_folds": a, "peer_folds": b, "ours_std": sa["std"],
                       "peer_std": sb["std"]}))
    return out


def monai_figures(ours: dict[str, Any], theirs: pd.DataFrame, folds: list[int],
                  timing: dict[str, Any], command: str) -> list[Figure]:
    """MONAI's scores against ours, and the training time each got."""
    out = score_figures(ours["per_subject"], theirs, folds, "peers_real_monai",
                        "MONAI BasicUNet 2d", command)
    ours_s = statistics.mean(ours["train_s"][f] for f in folds)
    theirs_s = statistics.mean(timing["train_s"].values())
    out.append(Figure(
        key="peers_real_monai.train_s", label="training per fold: brainseg vs MONAI BasicUNet "
        "(our loop)", value=ours_s, unit="s", reference=theirs_s,
        reference_label="MONAI BasicUNet 2d", ratio=theirs_s / ours_s,
        ratio_label="MONAI / ours (1: equal budget)", repeats=len(folds), command=command,
        note=f"MONAI: {timing['epochs']} epochs of "
             f"{sorted(set(timing['slices_per_epoch'].values()))} slices (ours: "
             f"{ours.get('slices_per_epoch', '?')}), "
             f"{statistics.mean(timing['per_slice_s'].values()):.3f} s per slice",
        extra=timing))
    return out


def figures(ours: pd.DataFrame, theirs: pd.DataFrame, folds: list[int], timing: dict,
            command: str) -> list[Figure]:
    """Dice (mean over folds of the fold means, ± std over folds) per region; HD95 and
    lesion-wise Dice; training and prediction time; the targets of the comparison."""
    out = score_figures(ours, theirs, folds, "peers_real", "nnU-Net v2 2d", command)
    ours_train = statistics.mean(timing["ours_train_s"])
    nn_train = statistics.mean(timing["nnunet_train_s"])
    out.append(Figure(
        key="peers_real.train_s", label="training per fold: brainseg vs nnU-Net 2d (its loop)",
        value=ours_train, unit="s", reference=nn_train, reference_label="nnU-Net v2 2d",
        ratio=nn_train / ours_train, ratio_label="nnU-Net / ours (1: equal budget)",
        repeats=len(folds), command=command,
        note=f"nnU-Net trainers per fold (epochs e x iterations i, plans {timing['plans']}): "
             f"{timing['trainer']}; its command {statistics.mean(timing['nnunet_command_s']):.0f}"
             f" s with start-up; {timing['per_iteration_s']:.1f} s per iteration and "
             f"{timing['startup_s']:.0f} s of start-up (probe)",
        extra=timing))
    p = timing["predict"]
    out.append(Figure(
        key="peers_real.max_rss", label="peak memory of prediction: brainseg vs nnUNetv2_predict",
        value=p["ours_max_rss_mib"], unit="MiB", reference=p["nnunet_max_rss_mib"],
        reference_label="nnU-Net v2 2d", ratio=p["nnunet_max_rss_mib"] / p["ours_max_rss_mib"],
        ratio_label="nnU-Net / ours", repeats=1, command=command,
        note=f"nnU-Net training peak {timing['nnunet_train_max_rss_mib']:.0f} MiB"))
    for key, label, theirs_key in (
            ("fresh", "prediction of one subject, fresh command", "nnunet_fresh_s"),
            ("fresh_no_tta", "prediction of one subject, fresh command, nnU-Net "
             "--disable_tta", "nnunet_fresh_no_tta_s"),
            ("batch", "prediction per subject in one command", "nnunet_batch_s")):
        ours_s = p["ours_batch_s" if key == "batch" else "ours_fresh_s"]
        ratio = p[theirs_key] / ours_s
        out.append(Figure(
            key=f"peers_real.predict_{key}", label=f"{label}: brainseg vs nnUNetv2_predict",
            value=ours_s, unit="s", reference=p[theirs_key], reference_label="nnU-Net v2 2d",
            ratio=ratio, ratio_label="x faster (nnU-Net / ours)", target=">= 5x faster",
            met=ratio >= 5, repeats=1, command=command))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="a real BraTS folder, any supported layout (default: "
                             "../shared/fixtures/brats18 beside the repository)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/brainseg-peers-real"),
                        help="work folder (kept between calls: finished folds are reused)")
    parser.add_argument("--folds", type=int, nargs="+", default=None,
                        help="folds to run (default: all 5; fewer is the quick mode)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch threads of both tools (default: the usable cores)")
    parser.add_argument("--nnunet-batch", type=int, default=None,
                        help="nnU-Net's 2d batch size (default: its plans'); another value "
                             "trains with a copy of its plans with only that changed")
    parser.add_argument("--per-iteration", type=float, nargs=2, metavar=("S", "STARTUP"),
                        help="nnU-Net's seconds per iteration and start-up seconds, from an "
                             "earlier probe on this machine (skips the probe)")
    parser.add_argument("--peers", nargs="+", choices=("nnunet", "monai"),
                        default=["nnunet", "monai"],
                        help="the peers to run (default: both; each is recorded in its own "
                             "section, peers_real and peers_real_monai)")
    parser.add_argument("--reuse-ours", action="store_true",
                        help="with --peers monai: take ours' scores and training seconds of "
                             "these folds from the recorded peers_real section instead of "
                             "training the preset again (same folds required)")
    parser.add_argument("--no-record", action="store_true",
                        help="print the figures, do not write benchmarks/results/latest.json")
    args = parser.parse_args()
    setup_logging()
    if not args.data.is_dir():
        parser.error(f"--data {args.data}: no such folder")
    work = args.work.resolve()
    cv_real.THREADS = str(args.threads)
    if args.reuse_ours and "nnunet" in args.peers:
        parser.error("--reuse-ours needs --peers monai: the nnU-Net arm times our model's "
                     "prediction, so it trains ours")
    params = cv_real.config_params("preset", args.data.resolve())
    raw, slices, splits_path = cv_real.prepare(params, work / "cv")
    splits = pd.read_csv(splits_path)
    folds = args.folds or list(range(int(splits["fold"].max()) + 1))
    ours = recorded_ours(folds) if args.reuse_ours else run_brainseg(args.data.resolve(), work,
                                                                     folds)
    ours["slices_per_epoch"] = params["train"]["slices_per_epoch"]
    command = "python -m benchmarks.bench_peers_real " + " ".join(sys.argv[1:])
    if "monai" in args.peers:
        theirs, timing = run_monai(params, raw, slices, splits_path, folds, ours["train_s"],
                                   work, args.threads)
        figs = monai_figures(ours, theirs, folds, timing, command)
        cols = ["subject", "fold", *(f"{m}_{r}" for m in METRICS for r in REGIONS)]
        if args.no_record:
            for fig in figs:
                log.info("%s", fig)
        else:
            record("peers_real_monai", figs, folds=folds, subjects=len(theirs),
                   ours_measured=ours.get("measured", "this run"),
                   per_subject={"monai": theirs[cols].round(4).to_dict("records")})
    if "nnunet" in args.peers:
        run_nnunet(args, work, raw, splits, folds, ours, command)


def run_nnunet(args: argparse.Namespace, work: Path, raw: Path, splits: pd.DataFrame,
               folds: list[int], ours: dict[str, Any], command: str) -> None:
    """The nnU-Net arm: preprocess, budget, train, predict and score per fold; record."""
    nn_work = work / "nnunet"
    preprocess_s = prepare_nnunet(raw, splits, nn_work)
    plans = nnunet.write_plans(nn_work / "nnUNet_preprocessed" / DATASET, args.nnunet_batch)
    if args.per_iteration:
        per_iteration, startup = args.per_iteration
    else:
        per_iteration, startup = calibrate(nn_work, folds[0], plans)
    rows, runs, predict_s, rss = [], {}, {}, {}
    for fold in folds:
        epochs, iterations = budget(ours["train_s"][fold], per_iteration, startup)
        runs[fold] = run = train_nnunet(nn_work, fold, epochs, iterations, plans)
        held = nnunet_folds(splits)[fold]["val"]
        pred, done = predict_nnunet(nn_work, raw, held, fold, run, f"fold{fold}")
        predict_s[fold] = done.seconds / len(held)
        rss[fold] = done.max_rss_mib
        table = score_folder(pred, raw, held).assign(fold=fold)
        rows.append(table)
        log.info("fold %d: nnU-Net %s, training %.0f s (ours %.0f s), Dice %s", fold,
                 run["trainer"], run["train_s"], ours["train_s"][fold],
                 {r: round(table[f"dice_{r}"].mean(), 3) for r in REGIONS})
    theirs = pd.concat(rows, ignore_index=True)
    first = folds[0]
    held = nnunet_folds(splits)[first]["val"]
    predict = predict_ours(raw, held, ours["run"] / f"fold{first}" / "model.pt", work,
                           args.threads)
    predict["nnunet_batch_s"] = statistics.mean(predict_s.values())
    no_tta = predict_nnunet(nn_work, raw, held[:1], first, runs[first], "fresh-notta")[1]
    tta = predict_nnunet(nn_work, raw, held[:1], first, runs[first], "fresh", tta=True)[1]
    predict.update(nnunet_fresh_no_tta_s=no_tta.seconds, nnunet_fresh_s=tta.seconds,
                   nnunet_max_rss_mib=max(no_tta.max_rss_mib, tta.max_rss_mib, *rss.values()))
    timing = {
        "ours_train_s": [ours["train_s"][f] for f in folds],
        "nnunet_train_s": [runs[f]["train_s"] for f in folds],
        "nnunet_command_s": [runs[f]["command_s"] for f in folds],
        "nnunet_train_max_rss_mib": max(runs[f]["max_rss_mib"] for f in folds),
        "trainer": {f: runs[f]["trainer"] for f in folds}, "plans": plans,
        "per_iteration_s": per_iteration, "startup_s": startup,
        "nnunet_preprocess_s": preprocess_s, "threads": args.threads, "predict": predict,
    }
    figs = figures(ours["per_subject"], theirs, folds, timing, command)
    if args.no_record:
        for fig in figs:
            log.info("%s", fig)
        return
    cols = ["subject", "fold", *(f"{m}_{r}" for m in METRICS for r in REGIONS)]
    record("peers_real", figs, folds=folds, subjects=len(theirs),
           per_subject={"brainseg": ours["per_subject"][cols].round(4).to_dict("records"),
                        "nnunet": theirs[cols].round(4).to_dict("records")})


if __name__ == "__main__":
    main()
