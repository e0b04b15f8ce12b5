"""Stage `train`: a 2D U-Net on the normalized slices, validated per subject each epoch.

Writes the best checkpoint (by mean validation Dice) with the config needed to rebuild
it and to preprocess new scans, the per-epoch history CSV, and one MLflow run.
"""

from __future__ import annotations

import argparse
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, RandomSampler
from tqdm.auto import tqdm

from brainseg.data.labels import REGIONS, labels_to_regions
from brainseg.data.split import read_splits
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import predict_slices
from brainseg.evaluation.metrics import dice
from brainseg.io.atomic import atomic_file
from brainseg.models.outputs import region_targets
from brainseg.models.unet import build_model
from brainseg.parallel import default_jobs
from brainseg.params import load_params
from brainseg.tracking import add_tracking_argument
from brainseg.training.data import SliceDataset, build_augmentation, load_subject_slices
from brainseg.training.losses import DiceBCELoss
from brainseg.training.mlflow_run import TrainingRun

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a seeded generator for the sampler."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


def subject_folders(slices_dir: Path, splits: pd.DataFrame, split: str) -> list[Path]:
    """Folders of the subjects assigned to `split`, refusing an empty split."""
    names = sorted(splits.loc[splits["split"] == split, "subject"])
    if not names:
        raise BrainsegError(f"no subject in the '{split}' split")
    return [slices_dir / n for n in names]


def make_loader(dataset: SliceDataset, cfg: dict[str, Any], gen: torch.Generator,
                workers: int) -> DataLoader:
    n = cfg["slices_per_epoch"] or len(dataset)
    sampler = RandomSampler(dataset, replacement=n > len(dataset), num_samples=n, generator=gen)
    return DataLoader(dataset, batch_size=cfg["batch_size"], sampler=sampler, num_workers=workers,
                      drop_last=len(dataset) > cfg["batch_size"], persistent_workers=workers > 0)


def validate(model, folders: list[Path], loss_fn, batch_size: int, device: str) -> dict[str, float]:
    """Mean validation loss and per-subject 3D Dice (in slice space) per region."""
    scores = {r: [] for r in REGIONS}
    losses = []
    for folder in folders:
        image, label = load_subject_slices(folder, mmap=False)
        probs = predict_slices(model, image, batch_size, device)
        regions = labels_to_regions(label)  # (3, s, h, w)
        target = torch.from_numpy(regions.transpose(1, 0, 2, 3).astype(np.float32))
        logits = torch.logit(torch.from_numpy(probs).clamp(1e-6, 1 - 1e-6))
        losses.append(float(loss_fn(logits, target)))
        for i, region in enumerate(REGIONS):
            scores[region].append(dice(probs[:, i] > 0.5, regions[i]))
    out = {f"val_dice_{r}": float(np.mean(v)) for r, v in scores.items()}
    out["val_dice_mean"] = float(np.mean([out[f"val_dice_{r}"] for r in REGIONS]))
    out["val_loss"] = float(np.mean(losses))
    return out


def train_epoch(model, loader, loss_fn, optimizer, device: str, epoch: int) -> tuple[float, float]:
    """One pass over the loader; returns (mean loss, slices per second)."""
    model.train()
    total, count, start = 0.0, 0, time.perf_counter()
    for image, label in tqdm(loader, desc=f"epoch {epoch}", unit="batch", leave=False):
        image = image.to(device).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(image), region_targets(label).to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(image)
        count += len(image)
    return total / max(count, 1), count / (time.perf_counter() - start)


def run_train(params: dict[str, Any], slices_dir: str | Path, splits_path: str | Path,
              model_out: str | Path, history_out: str | Path, run_info_out: str | Path,
              tracking_uri: str, device: str = "cpu", workers: int = 0) -> dict[str, float]:
    """Train, keep the best epoch's weights, and record everything in one MLflow run.

    Returns:
        The best epoch's validation metrics.
    """
    cfg, seed = params["train"], params["base"]["seed"]
    gen = seed_everything(seed)
    splits = read_splits(splits_path)
    train_set = SliceDataset(subject_folders(Path(slices_dir), splits, "train"),
                             build_augmentation(cfg["augment"], seed))
    val_folders = subject_folders(Path(slices_dir), splits, "val")
    loader = make_loader(train_set, cfg, gen, workers)
    model = build_model(cfg["model"]).to(device=device, memory_format=torch.channels_last)
    opt = cfg["optimizer"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt["lr"],
                                  weight_decay=opt["weight_decay"])
    loss_fn = DiceBCELoss(cfg["loss"]["dice_weight"], cfg["loss"]["ce_weight"])
    config = {"model": {**cfg["model"], "in_channels": 4, "out_channels": len(REGIONS)},
              "extract": params["extract"], "normalize": params["normalize"],
              "regions": list(REGIONS)}
    history, best = [], {"val_dice_mean": -1.0}
    with TrainingRun(tracking_uri, cfg["experiment"], params, Path(slices_dir)) as run:
        log.info("training on %d slices; MLflow run %s", len(train_set), run.run_id)
        for epoch in range(1, cfg["epochs"] + 1):
            train_loss, speed = train_epoch(model, loader, loss_fn, optimizer, device, epoch)
            scores = validate(model, val_folders, loss_fn, cfg["batch_size"], device)
            row = {"epoch": epoch, "train_loss": train_loss, **scores, "slices_per_s": speed}
            history.append(row)
            run.log_epoch(row)
            log.info("epoch %d: %s", epoch, {k: round(v, 4) for k, v in row.items()})
            if row["val_dice_mean"] > best["val_dice_mean"]:
                best = row
                with atomic_file(model_out) as tmp:
                    torch.save({"state_dict": model.state_dict(), "config": config,
                                "epoch": epoch, "val_dice_mean": row["val_dice_mean"]}, tmp)
        with atomic_file(history_out) as tmp:
            pd.DataFrame(history).to_csv(tmp, index=False, lineterminator="\n")
        run.finish(best, Path(model_out), Path(history_out), Path(run_info_out))
    return best


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", required=True, help="params.yaml to read (validated)")
    parser.add_argument("--slices-dir", required=True, type=Path, help="normalize output")
    parser.add_argument("--splits", required=True, type=Path, help="data/splits.csv")
    parser.add_argument("--model-out", required=True, type=Path, help="best checkpoint (.pt)")
    parser.add_argument("--history-out", required=True, type=Path, help="per-epoch CSV")
    parser.add_argument("--run-info-out", required=True, type=Path,
                        help="JSON with the MLflow run id, read by evaluate and figures")
    add_runtime_arguments(parser)


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """Knobs that change speed, not results: kept out of params.yaml."""
    add_tracking_argument(parser)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                        help="torch device (auto: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0: torch's default)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")


def set_threads(threads: int) -> None:
    """Use `threads` torch CPU threads, at most the usable cores (0: torch's default).

    Snakemake may grant more threads than the machine has (`--cores 8` on 2 cores);
    oversubscribing the cores slows convolutions down, so the grant is capped.
    """
    if threads > 0:
        torch.set_num_threads(min(threads, default_jobs(0)))


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise BrainsegError("--device cuda: no CUDA device is available")
    return name


def main(args: argparse.Namespace) -> None:
    from brainseg.tracking import tracking_uri

    set_threads(args.threads)
    run_train(load_params(args.params), args.slices_dir, args.splits, args.model_out,
              args.history_out, args.run_info_out, tracking_uri(args.tracking_uri),
              resolve_device(args.device), args.workers)
