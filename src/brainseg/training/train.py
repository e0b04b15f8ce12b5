"""Stage `train`: a U-Net on the normalized slices, validated per subject (train.val_every).

A 2D U-Net (`train.model.dims: 2`) trains on batches of axial slices; a 3D one (`dims: 3`) on
random patches of `train.patch_size` of each subject's stacked slices (`PatchDataset`) and
validates with the sliding window that evaluate and predict use.

Writes the best checkpoint (by mean validation Dice) with the config needed to rebuild
it and to preprocess new scans, the per-epoch history CSV, one MLflow run with the
registered model, and (until the training completes) a resumable state after every
epoch. Under `torchrun` it trains data-parallel; only rank 0 writes and logs.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from brainseg.data.labels import REGIONS
from brainseg.data.modalities import MODALITIES
from brainseg.data.split import read_splits, subjects_in_split
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_file
from brainseg.models.outputs import out_channels
from brainseg.models.unet import build_model
from brainseg.runtime import (
    add_runtime_arguments,
    autocast,
    resolve_device,
    seed_everything,
    set_threads,
)
from brainseg.training import distributed
from brainseg.training.data import (
    SliceDataset,
    build_augmentation,
    load_subject_inputs,
    slice_channels,
)
from brainseg.training.losses import SegmentationLoss
from brainseg.training.mlflow_run import TrainingRun
from brainseg.training.optim import build_optimizer, build_scheduler, clip_gradients
from brainseg.training.patches import PatchDataset, crop_padded, patch_start
from brainseg.training.sampling import BatchPlan, EpochBatchSampler
from brainseg.training.state import fingerprint, load_state, save_state, save_torch, set_rng_states
from brainseg.training.validation import VAL_COLUMNS, validate

log = logging.getLogger(__name__)


def model_config(params: dict[str, Any], modalities: tuple[str, ...] = MODALITIES,
                 regions: tuple[str, ...] = REGIONS) -> dict[str, Any]:
    """What a checkpoint stores to rebuild the model, preprocess new scans and read its output.

    `modalities` are the input modalities, in order: a scan to segment must have each of
    them. `in_channels` is their number times 2n + 1 with n = `context_slices` (2.5D input,
    `brainseg.data.preprocess.stack_context`). `regions` are those it was trained on (WT alone
    for whole-tumour-only labels): the others are neither predicted nor scored. A 3D model
    (`dims` 3) also records its sliding window: `patch` {size (d, h, w), overlap}.
    """
    cfg = params["train"]
    context = 2 * cfg["model"]["context_slices"] + 1
    config = {"model": {**cfg["model"], "in_channels": len(modalities) * context,
                        "out_channels": out_channels(cfg["model"]["output"])},
              "extract": params["extract"], "normalize": params["normalize"],
              "modalities": list(modalities), "regions": list(regions)}
    if cfg["model"].get("dims", 2) == 3:
        config["patch"] = {"size": list(cfg["patch_size"]), "overlap": cfg["patch_overlap"]}
    else:  # a 2D checkpoint reads as 2D without it, and keeps the bytes of one made before 3D
        config["model"].pop("dims", None)
    return config


class Trainer:
    """Model, data, optimizer and schedule of one training, in one process of `ctx`."""

    def __init__(self, params: dict[str, Any], slices_dir: Path, splits_path: Path,
                 ctx: distributed.Context, workers: int, fold: int | None = None) -> None:
        cfg = self.cfg = params["train"]
        self.ctx, self.seed = ctx, params["base"]["seed"]
        if cfg["precision"] == "fp16" and not ctx.device.startswith("cuda"):
            raise BrainsegError("train.precision fp16 needs a CUDA device; use bf16 on CPU")
        seed_everything(self.seed)
        train = [slices_dir / s for s in subjects_in_split(splits_path, "train", fold)]
        self.context_slices = cfg["model"]["context_slices"]
        self.dims = cfg["model"].get("dims", 2)
        self.dataset: SliceDataset | PatchDataset
        if self.dims == 3:
            self.dataset = PatchDataset(train, tuple(cfg["patch_size"]), cfg["augment"])
        else:
            self.dataset = SliceDataset(train, build_augmentation(
                cfg["augment"], self.seed, context_slices=self.context_slices),
                self.context_slices)
        self.val_folders = [slices_dir / s for s in subjects_in_split(splits_path, "val", fold)]
        modalities, self.regions = slice_channels(train + self.val_folders)
        if self.regions != REGIONS:
            log.info("the labels annotate %s only: loss and validation Dice on those; the "
                     "other regions are not available", " ".join(self.regions))
        plan = BatchPlan(self.dataset.has_tumor, cfg["batch_size"], cfg["slices_per_epoch"],
                         cfg["tumor_fraction"], self.seed,
                         getattr(self.dataset, "uniform", None))
        self.sampler = EpochBatchSampler(plan, ctx.rank, ctx.world)
        self.loader = DataLoader(self.dataset, batch_sampler=self.sampler, num_workers=workers,
                                 persistent_workers=workers > 0,
                                 generator=torch.Generator().manual_seed(self.seed))
        self.config = model_config(params, modalities, self.regions)
        channels_last = torch.channels_last_3d if self.dims == 3 else torch.channels_last
        self.memory = channels_last if cfg["channels_last"] else torch.contiguous_format
        self.model = build_model(self.config["model"]).to(ctx.device, memory_format=self.memory)
        self.net = (DistributedDataParallel(self.model) if ctx.distributed else self.model)
        self.optimizer = build_optimizer(self.model, cfg["optimizer"])
        self.scheduler = build_scheduler(self.optimizer, cfg["schedule"], len(plan), cfg["epochs"])
        self.scaler = torch.amp.GradScaler("cuda", enabled=cfg["precision"] == "fp16")
        self.loss_fn = SegmentationLoss(cfg["model"]["output"], cfg["loss"]["dice_weight"],
                                        cfg["loss"]["ce_weight"], self.regions)

    def state(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict()}

    def load(self, state: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise BrainsegError(f"{path}: the saved state does not fit this model: {exc}") from exc
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])

    def train_epoch(self, epoch: int) -> tuple[float, float]:
        """One pass over this epoch's batches; returns (mean loss, slices per second)."""
        self.net.train()
        self.sampler.set_epoch(epoch)
        total, count, start = 0.0, 0, time.perf_counter()
        bar = tqdm(self.loader, desc=f"epoch {epoch}", unit="batch", leave=False,
                   disable=not self.ctx.main)
        for image, label in bar:
            total += float(self.step(image, label)) * len(image)
            count += len(image)
        return total / max(count, 1), count / (time.perf_counter() - start)

    def step(self, image: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; returns its loss (detached).

        Args:
            image: (batch, m, h, w) float, as the loader gives it ((batch, m, d, h, w) in 3D).
            label: (batch, h, w) BraTS labels ((batch, d, h, w) in 3D).
        """
        image = image.to(self.ctx.device).contiguous(memory_format=self.memory)
        with autocast(self.cfg["precision"], self.ctx.device):
            outputs = self.net(image)
        loss = self.loss_fn(outputs, label.to(self.ctx.device))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        clip_gradients(self.model, self.cfg["optimizer"]["grad_clip"])
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return loss.detach()

    def validate(self) -> dict[str, float]:
        with autocast(self.cfg["precision"], self.ctx.device):
            return validate(self.model, self.val_folders, self.loss_fn,
                            self.cfg["model"]["output"], self.cfg["batch_size"],
                            self.ctx.device, self.memory, self.regions, self.context_slices,
                            self.config.get("patch"))

    def example(self) -> np.ndarray:
        """One validation slice (1, c, h, w) float32, or in 3D the central patch (1, c, d, h,
        w) of a validation subject: the MLflow model's input example."""
        image, _ = load_subject_inputs(self.val_folders[0], self.context_slices)
        if self.dims == 2:
            return np.asarray(image[len(image) // 2: len(image) // 2 + 1], dtype=np.float32)
        size = tuple(self.cfg["patch_size"])
        volume = np.moveaxis(image, 1, 0)  # (m, s, h, w)
        start = tuple(patch_start(n // 2, n, p) for n, p in
                      zip(volume.shape[1:], size, strict=True))
        return crop_padded(volume, start, size)[None].astype(np.float32)


def run_train(*, params: dict[str, Any], slices_dir: str | Path, splits: str | Path,
              model_out: str | Path, history_out: str | Path, run_info_out: str | Path,
              tracking_uri: str, device: str = "cpu", workers: int = 0, resume: bool = False,
              state: str | Path | None = None, fold: int | None = None) -> dict[str, float]:
    """Train, keep the best (or last) epoch's weights, and record everything in one MLflow run.

    Args:
        params: the validated params (sections base, extract, normalize, train).
        slices_dir: the training store of `normalize` (one folder per subject).
        splits: data/splits.csv (its train and val subjects are used, or with `fold` those
            of that cross-validation fold: its own subjects validate).
        model_out: the best checkpoint (weights and the config that rebuilds the model).
        history_out: the per-epoch CSV.
        run_info_out: JSON with the MLflow run id and registered model version.
        tracking_uri: the MLflow tracking URI.
        device: torch device ("cpu", "cuda").
        workers: data loader worker processes.
        resume: continue from the state at `state` (same params), in the same run.
        state: the per-epoch training state (default: train_state.pt next to
            `model_out`); removed when the training completes. The best (or last) epoch's
            checkpoint is kept beside it (`best_checkpoint`) and becomes `model_out` only
            when the training completes: a stopped training leaves no `model_out`.

    Returns:
        The best epoch's history row.
    """
    model_out = Path(model_out)
    state_path = Path(state or model_out.parent / "train_state.pt")
    ctx = distributed.setup(device)
    try:
        return _train(params, Path(slices_dir), Path(splits), model_out, Path(history_out),
                      Path(run_info_out), tracking_uri, ctx, workers, resume, state_path, fold)
    finally:
        distributed.teardown(ctx)


def run_cross_validation(*, params: dict[str, Any], slices_dir: str | Path, splits: str | Path,
                         folds_dir: str | Path, model_out: str | Path, history_out: str | Path,
                         run_info_out: str | Path, tracking_uri: str, device: str = "cpu",
                         workers: int = 0, resume: bool = False,
                         combine_only: bool = False) -> dict[str, float]:
    """Train every fold of the splits into `folds_dir`, then write their ensemble.

    Args:
        folds_dir: fold f writes `folds_dir/<f>/` (see `brainseg.training.folds`); the other
            arguments are those of `run_train`.
        combine_only: the folds are already trained (one Snakemake job each); only
            combine them (`brainseg.training.folds.combine_folds`).
        resume: continue each interrupted fold from its state file.

    Returns:
        The cross-validation summary of `combine_folds`.
    """
    from brainseg.data.split import n_folds
    from brainseg.training.folds import combine_folds, fold_outputs

    k = n_folds(read_splits(splits))
    if k < 2:
        raise BrainsegError(f"{splits}: no cross-validation folds (split.folds: "
                            f"{params['split']['folds']}); train without --folds-dir")
    if not combine_only:
        for fold in range(k):
            out = fold_outputs(folds_dir, fold)
            log.info("cross-validation: fold %d of %d", fold, k)
            run_train(params=params, slices_dir=slices_dir, splits=splits,
                      model_out=out["model"], history_out=out["history"],
                      run_info_out=out["run_info"], tracking_uri=tracking_uri, device=device,
                      workers=workers, resume=resume, fold=fold)
    return combine_folds(params, folds_dir, k, model_out, history_out, run_info_out,
                         tracking_uri)


def _train(params, slices_dir, splits_path, model_out, history_out, run_info_out, uri, ctx,
           workers, resume, state_path, fold) -> dict[str, float]:
    cfg = params["train"]
    previous = load_state(state_path, params) if resume else None
    trainer = Trainer(params, slices_dir, splits_path, ctx, workers, fold)
    keep_last = cfg["checkpoint"] == "last"
    history, best, bad, run_id, first = [], {"val_dice_mean": -1.0}, 0, None, 1
    if previous is not None:
        trainer.load(previous, state_path)
        set_rng_states(previous["rng"])
        history, best, bad = previous["history"], previous["best"], previous["bad_epochs"]
        run_id, first = previous["run_id"], previous["epoch"] + 1
        log.info("resuming after epoch %d from %s", previous["epoch"], state_path)
    run = (TrainingRun(uri, cfg["experiment"], params, slices_dir, run_id, fold) if ctx.main
           else contextlib.nullcontext())
    with run:
        if ctx.main:
            log.info("training on %d %s, %d process(es); MLflow run %s",
                     len(trainer.dataset), "slices" if trainer.dims == 2 else
                     "patch sources (subjects, uniform and tumour-centred)", ctx.world,
                     run.run_id)
            if previous is not None:
                run.relog_missing(history)
        patience, min_delta = cfg["early_stopping"]["patience"], cfg["early_stopping"]["min_delta"]
        for epoch in range(first, cfg["epochs"] + 1):
            loss, speed = trainer.train_epoch(epoch)
            row = {"epoch": epoch, "train_loss": distributed.mean_over_ranks(loss, ctx)}
            validated = epoch % cfg["val_every"] == 0 or epoch == cfg["epochs"]
            row.update(distributed.from_main(trainer.validate() if ctx.main else None, ctx)
                       if validated else dict.fromkeys(VAL_COLUMNS, float("nan")))
            row["lr"] = trainer.scheduler.get_last_lr()[0]
            # A timing: logged and sent to MLflow, kept out of the history (a DVC output).
            speed = distributed.mean_over_ranks(speed, ctx) * ctx.world
            history.append(row)
            improved = validated and row["val_dice_mean"] > best["val_dice_mean"] + min_delta
            if validated:  # patience counts validations
                best, bad = (row, 0) if improved else (best, bad + 1)
                if keep_last:
                    best = row
            if ctx.main:
                if improved or (keep_last and validated):
                    save_torch({"state_dict": trainer.model.state_dict(),
                                "config": trainer.config, "epoch": epoch,
                                "val_dice_mean": row["val_dice_mean"]},
                               best_checkpoint(state_path))
                save_state(state_path, **trainer.state(), epoch=epoch, history=history,
                           best=best, bad_epochs=bad, run_id=run.run_id,
                           fingerprint=fingerprint(params))
                run.log_epoch({**row, "slices_per_s": speed})
                log.info("epoch %d: %s, %.1f slices/s", epoch,
                         {k: round(v, 4) for k, v in row.items()}, speed)
            if patience and bad >= patience:
                log.info("early stopping: no gain above %g for %d epochs", min_delta, patience)
                break
        if ctx.main:
            _finish(run, trainer, best, history, state_path, model_out, history_out,
                    run_info_out, cfg)
            state_path.unlink(missing_ok=True)
    return best


def best_checkpoint(state_path: Path) -> Path:
    """Where a training keeps its best (or last) epoch's checkpoint until it completes."""
    return state_path.with_name(f"{state_path.stem}.best.pt")


def _finish(run, trainer, best, history, state_path, model_out, history_out, run_info_out,
            cfg) -> None:
    """Write the history and the model, log and register it, close the run's record."""
    with atomic_file(history_out) as tmp:
        pd.DataFrame(history).to_csv(tmp, index=False, lineterminator="\n")
    model_out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(best_checkpoint(state_path), model_out)
    ckpt = torch.load(model_out, map_location="cpu", weights_only=True)
    trainer.model.load_state_dict(ckpt["state_dict"])
    registered = run.log_model(trainer.model, trainer.config, cfg["registered_model"],
                               trainer.example())
    run.mlflow.log_metrics({"epochs_run": len(history)})
    run.finish(best, model_out, history_out, run_info_out, registered)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slices-dir", required=True, type=Path, help="normalize output")
    parser.add_argument("--splits", required=True, type=Path, help="data/splits.csv")
    parser.add_argument("--model-out", required=True, type=Path, help="best checkpoint (.pt)")
    parser.add_argument("--history-out", required=True, type=Path, help="per-epoch CSV")
    parser.add_argument("--run-info-out", required=True, type=Path,
                        help="JSON with the MLflow run id and registered model version, read "
                        "by evaluate and figures")
    parser.add_argument("--fold", type=int, default=None,
                        help="train only cross-validation fold N of --splits (split.folds >= 2): "
                        "the fold's subjects validate, the other folds train")
    parser.add_argument("--folds-dir", type=Path, default=None,
                        help="cross-validation (split.folds >= 2): train every fold into "
                        "FOLDS_DIR/<fold>/ (model.pt, mlflow_run.json, train_history.csv), then "
                        "write their ensemble to --model-out, the folds' histories to "
                        "--history-out and an MLflow parent run to --run-info-out (ignored "
                        "without folds). The runners train each fold apart (`--fold N "
                        "--threads 1`, then --combine-only): a fold's weights depend on its "
                        "thread count")
    parser.add_argument("--combine-only", action="store_true",
                        help="with --folds-dir: the folds are trained already (`--fold N`, one "
                        "Snakemake job or DVC stage each); only write the ensemble, history and "
                        "parent run (ignored without folds)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted training from its state file, in the same "
                        "MLflow run (the params must not have changed)")
    parser.add_argument("--state", type=Path, default=None,
                        help="training state saved after every epoch (default: train_state.pt "
                        "next to --model-out; removed when the training completes)")
    add_runtime_arguments(parser)


def main(args: argparse.Namespace, params: dict[str, Any]) -> None:
    from brainseg.tracking import check_tracking_store, tracking_uri

    set_threads(args.threads)
    cv = params["split"]["folds"] >= 2
    if args.fold is None and cv and args.folds_dir is None:
        raise BrainsegError(f"{args.params}: split.folds is {params['split']['folds']}: give "
                            "--fold N (one fold) or --folds-dir DIR (every fold and their "
                            "ensemble)")
    uri = tracking_uri(args.tracking_uri)
    check_tracking_store(uri)  # before any data is read or any output written
    runtime = {"tracking_uri": uri,
               "device": resolve_device(args.device), "workers": args.workers,
               "resume": args.resume}
    if cv and args.fold is None:
        run_cross_validation(params=params, slices_dir=args.slices_dir, splits=args.splits,
                             folds_dir=args.folds_dir, model_out=args.model_out,
                             history_out=args.history_out, run_info_out=args.run_info_out,
                             combine_only=args.combine_only, **runtime)
        return
    run_train(params=params, slices_dir=args.slices_dir, splits=args.splits,
              model_out=args.model_out, history_out=args.history_out,
              run_info_out=args.run_info_out, state=args.state, fold=args.fold, **runtime)
