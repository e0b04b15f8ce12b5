"""Peers on the same data and budget: nnU-Net v2 preprocessing, MONAI and smp U-Nets.

Run: python -m benchmarks.bench_peers --preprocess   (inside `make bench`, ~3 min)
     python -m benchmarks.bench_peers --training     (`make bench-peers`, ~28 min)
     python -m benchmarks.bench_peers --preprocess --training --smoke   (a couple of minutes)

The peers come from the optional `peers` dependency group (`make bench-peers-install`,
benchmarks/requirements-peers.lock); `make run` and `make test` never need them.

- `--preprocess` (section "peers_preprocess"): the cohort of `--params` (default: 24 synthetic
  subjects, made with `brainseg download` in a temporary folder, or `--raw-dir`) converted to
  nnU-Net v2's raw format (untimed), then the wall time of `nnUNetv2_plan_and_preprocess -d ID
  -c 2d -np 2 -npfp 2` (fingerprint, plans and the 2d preprocessed data: everything nnU-Net
  needs before training) against ours, `brainseg extract --jobs 2` then `brainseg normalize
  --jobs 2` (everything our training needs). Target: ours >= 5x faster.
- `--training` (section "peers_training"): our data stages into a temporary folder, then our
  default model, MONAI's `BasicUNet` (2D) and smp's `Unet` (resnet18, no pretrained weights)
  trained through OUR loop (data, sampling, augmentation, regions output, loss, schedule),
  each peer for about the wall time our model took (its epoch count picked from a timed
  one-epoch probe), and scored on the test split with OUR evaluate (3D per subject) twice:
  as the pipeline scores its model (each model's own `brainseg postprocess` settings, chosen
  on its validation predictions) and plain (threshold `evaluate.threshold`, no
  post-processing). Per-subject Dice is kept in the figures' `extra`. Target: ours >= each
  peer in every region.
"""

from __future__ import annotations

import argparse
import copy
import logging
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import nnunet_peer as nnunet
from benchmarks.common import LATEST, REPO, Figure, make_cohort, record, setup_logging

log = logging.getLogger("benchmarks.peers")

SMOKE_PARAMS = REPO / "tests" / "params-smoke.yaml"
DATASET_ID = 987
DATASET = f"Dataset{DATASET_ID}_BrainsegSyn"
PREPROCESS_TARGET = 5.0
REGIONS = ("WT", "TC", "ET")


def brainseg(*args: str | Path) -> None:
    """Run one `brainseg` CLI command with this interpreter (raises on a non-zero exit)."""
    cmd = [sys.executable, "-m", "brainseg", *map(str, args)]
    log.info("$ %s", " ".join(cmd[2:]))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


# --- nnU-Net preprocessing -------------------------------------------------------------------


def run_nnunet(exe: list[str], work: Path) -> float:
    """Wall seconds of plan_and_preprocess into fresh preprocessed/results folders."""
    pre, results = work / "nnUNet_preprocessed", work / "nnUNet_results"
    shutil.rmtree(pre, ignore_errors=True)
    shutil.rmtree(results, ignore_errors=True)
    seconds = nnunet.run([*exe, "-d", str(DATASET_ID), "-c", "2d", "-np", "2", "-npfp", "2"],
                         work).seconds
    stored = sorted((pre / DATASET).glob("nnUNetPlans_2d/*"))
    if not stored:
        raise SystemExit(f"{pre}: nnU-Net wrote no 2d preprocessed data")
    return seconds


def run_ours(params: Path, raw_dir: Path, work: Path) -> float:
    """Wall seconds of `brainseg extract --jobs 2` + `brainseg normalize --jobs 2`."""
    extracted, slices = work / "extracted", work / "slices"
    shutil.rmtree(extracted, ignore_errors=True)
    shutil.rmtree(slices, ignore_errors=True)
    start = time.perf_counter()
    brainseg("extract", "--params", params, "--raw-dir", raw_dir, "--out-dir", extracted,
             "--jobs", "2")
    brainseg("normalize", "--params", params, "--in-dir", extracted, "--out-dir", slices,
             "--jobs", "2")
    return time.perf_counter() - start


def bench_preprocess(params: Path, raw_dir: Path | None, repeats: int, nnunet_repeats: int,
                     work: Path) -> list[Figure]:
    """Ours vs nnU-Net's plan_and_preprocess on one raw folder (see the module docstring)."""
    exe = nnunet.executable("nnUNetv2_plan_and_preprocess")
    raw_dir = raw_dir or make_cohort(work, params)
    n = len(nnunet.subjects_of(raw_dir))
    nnunet.to_raw(raw_dir, work / "nnUNet_raw", DATASET)
    ours = [run_ours(params, raw_dir, work) for _ in range(repeats)]
    theirs = [run_nnunet(exe, work) for _ in range(nnunet_repeats)]
    ours_s, theirs_s = statistics.median(ours), statistics.median(theirs)
    ratio = theirs_s / ours_s
    note = (f"{n} subjects; nnU-Net timed {nnunet_repeats}x"
            + ("" if nnunet_repeats >= 3 else " (fewer than 3 to keep make bench short)")
            + "; the conversion to nnU-Net's raw format is not timed")
    return [Figure(
        key="peers_preprocess.extract_normalize", label="preprocessing for training: ours "
        "(extract + normalize, 2 jobs) vs nnU-Net v2 plan_and_preprocess 2d (-np 2 -npfp 2)",
        value=ours_s, unit="s", reference=theirs_s, reference_label="nnU-Net v2",
        ratio=ratio, ratio_label="x faster (nnU-Net / ours)", target=f">= {PREPROCESS_TARGET:g}x "
        "faster", met=ratio >= PREPROCESS_TARGET, repeats=repeats,
        command="python -m benchmarks.bench_peers --preprocess", note=note,
        extra={"subjects": n, "ours_s": ours, "nnunet_s": theirs,
               "ours_per_subject_s": ours_s / n, "nnunet_per_subject_s": theirs_s / n})]


# --- training through our loop ---------------------------------------------------------------


def monai_basic_unet(config: dict[str, Any]) -> Any:
    from monai.networks.nets import BasicUNet

    return BasicUNet(spatial_dims=2, in_channels=config["in_channels"],
                     out_channels=config["out_channels"])


def smp_unet_resnet18(config: dict[str, Any]) -> Any:
    import segmentation_models_pytorch as smp

    return smp.Unet("resnet18", encoder_weights=None, in_channels=config["in_channels"],
                    classes=config["out_channels"])


PEERS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "monai_basicunet": ("MONAI BasicUNet (2D)", monai_basic_unet),
    "smp_unet_resnet18": ("smp Unet resnet18 (no pretrained weights)", smp_unet_resnet18),
}


def prepare_data(params: Path, work: Path) -> dict[str, Path]:
    """download, extract, normalize and split with our CLI into `work` (untimed)."""
    raw = make_cohort(work, params)
    data = {"raw": raw, "slices": work / "slices", "splits": work / "splits.csv"}
    brainseg("extract", "--params", params, "--raw-dir", raw, "--out-dir", work / "extracted",
             "--jobs", "0")
    brainseg("normalize", "--params", params, "--in-dir", work / "extracted", "--out-dir",
             data["slices"], "--jobs", "0")
    brainseg("split", "--params", params, "--manifest", raw / "manifest.csv", "--out",
             data["splits"])
    return data


def peer_params(params: dict[str, Any], arch: str, epochs: int) -> dict[str, Any]:
    """Our params with another arch and epoch count (and its own MLflow names)."""
    out = copy.deepcopy(params)
    out["train"]["model"]["arch"] = arch
    out["train"]["epochs"] = epochs
    out["train"]["experiment"] = f"{params['train']['experiment']}-{arch}"
    out["train"]["registered_model"] = f"{params['train']['registered_model']}-{arch}"
    return out


def warm_tracking(uri: str) -> None:
    """Create the MLflow store and import what logging a model needs, so that the first
    timed training (ours) does not pay for it alone."""
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(uri)
    mlflow.MlflowClient().search_experiments()
    mlflow.MlflowClient().search_registered_models()


def train(params: dict[str, Any], data: dict[str, Path], out: Path, uri: str,
          device: str) -> float:
    """Train with our `run_train` into `out` (model.pt, history.csv); wall seconds."""
    from brainseg.training.train import run_train

    out.mkdir(parents=True)
    start = time.perf_counter()
    run_train(params=params, slices_dir=data["slices"], splits=data["splits"],
              model_out=out / "model.pt", history_out=out / "history.csv",
              run_info_out=out / "run_info.json", tracking_uri=uri, device=device)
    return time.perf_counter() - start


def score(params: dict[str, Any], data: dict[str, Path], out: Path, uri: str,
          device: str) -> dict[str, dict]:
    """Test Dice of `out/model.pt` by our `run_evaluate`, twice: plain (`evaluate.threshold`
    for every region) and post-processed as the pipeline does it (`run_postprocess` choosing
    thresholds, flip TTA and clean-up on the model's own validation predictions).

    Returns:
        {"plain" | "post": {"dice": {region: mean}, "per_subject": {subject: {region: Dice}}}},
        and "settings": what the post-processing search chose.
    """
    import pandas as pd

    from brainseg.evaluation.evaluate import run_evaluate
    from brainseg.evaluation.postprocess import run_postprocess

    settings = run_postprocess(params=params, model=out / "model.pt", splits=data["splits"],
                               raw_dir=data["raw"], settings_out=out / "postprocess.json",
                               table_out=out / "postprocess.csv", device=device)
    result: dict[str, dict] = {"settings": settings.to_dict()}
    for kind, chosen in (("plain", None), ("post", out / "postprocess.json")):
        metrics = run_evaluate(params=params, model=out / "model.pt", splits=data["splits"],
                               raw_dir=data["raw"], pred_dir=out / f"pred-{kind}",
                               per_subject_out=out / f"per_subject-{kind}.csv",
                               metrics_out=out / f"metrics-{kind}.json", device=device,
                               postprocess=chosen)
        table = pd.read_csv(out / f"per_subject-{kind}.csv")
        result[kind] = {
            "dice": {r: metrics["test"]["dice"][r] for r in REGIONS},
            "per_subject": {row["subject"]: {r: round(float(row[f"dice_{r}"]), 4)
                                             for r in REGIONS}
                            for _, row in table.iterrows()}}
    return result


def train_peer(params: dict[str, Any], arch: str, budget: float, data: dict[str, Path],
               work: Path, uri: str, device: str) -> tuple[int, float, float, Path]:
    """Train `arch` for about `budget` seconds: a timed one-epoch probe picks the epochs.

    Returns:
        (epochs, probe seconds, training seconds, folder of the trained model); a one-epoch
        answer reuses the probe.
    """
    probe_dir = work / f"{arch}-probe"
    probe = train(peer_params(params, arch, 1), data, probe_dir, uri, device)
    epochs = max(1, round(budget / probe))
    log.info("%s: one epoch (with validation) %.1f s -> %d epochs for %.0f s", arch, probe,
             epochs, budget)
    if epochs == 1:
        return epochs, probe, probe, probe_dir
    out = work / arch
    return epochs, probe, train(peer_params(params, arch, epochs), data, out, uri, device), out


def bench_training(params_path: Path, work: Path, device: str) -> list[Figure]:
    """Our default model and the two peers, same data, loop and wall-clock budget."""
    from brainseg.models.unet import register_arch
    from brainseg.params import load_params

    nnunet.declare_torchvision_ops()
    for arch, (_, factory) in PEERS.items():
        register_arch(arch, factory)
    params = load_params(params_path)
    data = prepare_data(params_path, work)
    uri = f"sqlite:///{work / 'mlflow.db'}"
    warm_tracking(uri)
    ours_wall = train(params, data, work / "ours", uri, device)
    ours = score(params, data, work / "ours", uri, device)
    log.info("ours: %.1f s of training, test Dice plain %s, post-processed %s", ours_wall,
             ours["plain"]["dice"], ours["post"]["dice"])
    command = "python -m benchmarks.bench_peers --training"
    figures = [Figure(key="peers_training.ours_wall", label="training wall time: our default "
                      f"U-Net ({params['train']['epochs']} epochs)", value=ours_wall, unit="s",
                      command=command, extra={"scores": ours})]
    for arch, (label, _) in PEERS.items():
        epochs, probe_s, wall, out = train_peer(params, arch, ours_wall, data, work, uri, device)
        theirs = score(peer_params(params, arch, epochs), data, out, uri, device)
        log.info("%s: %d epochs, %.1f s of training, test Dice plain %s, post-processed %s",
                 arch, epochs, wall, theirs["plain"]["dice"], theirs["post"]["dice"])
        figures.append(Figure(
            key=f"peers_training.{arch}_wall", label=f"training wall time: {label}",
            value=wall, unit="s", reference=ours_wall, reference_label="ours",
            ratio=wall / ours_wall, ratio_label="of our budget", repeats=1, command=command,
            note=f"{epochs} epochs, picked from a {probe_s:.0f} s one-epoch probe",
            extra={"epochs": epochs, "probe_s": probe_s, "scores": theirs}))
        for kind, how in (("post", "post-processed"), ("plain", "plain")):
            figures += [dice_figure(arch, label, kind, how, region, theirs, ours, wall,
                                    ours_wall, params, command) for region in REGIONS]
    return figures


def dice_figure(arch: str, label: str, kind: str, how: str, region: str, theirs: dict,
                ours: dict, wall: float, ours_wall: float, params: dict[str, Any],
                command: str) -> Figure:
    """One region's test Dice of a peer against ours, both scored the same way (`kind`)."""
    peer, mine = theirs[kind]["dice"][region], ours[kind]["dice"][region]
    scoring = ("each model's own post-processing, chosen on its validation predictions by "
               "`brainseg postprocess`" if kind == "post" else
               f"threshold {params['evaluate']['threshold']}, no post-processing")
    return Figure(
        key=f"peers_training.{arch}_dice_{region}" + ("" if kind == "post" else "_plain"),
        label=f"test Dice {region} ({how}): {label}", value=peer, unit="Dice",
        reference=mine, reference_label="ours (default U-Net)",
        ratio=mine / peer if peer > 0.01 else None, ratio_label="ours / peer",
        target="ours >= peer", met=mine >= peer, repeats=1, command=command,
        extra={"ours_minus_peer": mine - peer},
        note=f"same loop, data and wall time ({wall:.0f} s vs {ours_wall:.0f} s); 3D per "
             f"subject; {scoring}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preprocess", action="store_true", help="nnU-Net preprocessing vs ours")
    parser.add_argument("--training", action="store_true", help="MONAI and smp U-Nets vs ours")
    parser.add_argument("--smoke", action="store_true",
                        help=f"{SMOKE_PARAMS.relative_to(REPO)}: tiny cohort and budget; results "
                        "go to a temporary file, not benchmarks/results/latest.json")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--raw-dir", type=Path, default=None,
                        help="--preprocess: an existing raw folder (default: generate the cohort)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median)")
    parser.add_argument("--nnunet-repeats", type=int, default=1, help="timed runs of nnU-Net")
    parser.add_argument("--device", default="cpu", help="--training: torch device")
    args = parser.parse_args()
    setup_logging()
    if not (args.preprocess or args.training):
        parser.error("choose --preprocess and/or --training")
    params = SMOKE_PARAMS if args.smoke else args.params.resolve()
    results = (Path(tempfile.gettempdir()) / "brainseg-peers-smoke.json" if args.smoke
               else LATEST)
    with tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        if args.preprocess:
            figures = bench_preprocess(params, args.raw_dir, args.repeats, args.nnunet_repeats,
                                       Path(tmp) / "preprocess")
            record("peers_preprocess", figures, path=results)
        if args.training:
            record("peers_training", bench_training(params, Path(tmp) / "training", args.device),
                   path=results)
    log.info("results in %s", results)


if __name__ == "__main__":
    main()
