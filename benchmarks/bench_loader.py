"""Slices per second of the augmenting training DataLoader alone (no model).

Run: .venv/bin/python benchmarks/bench_loader.py [--workers 0 1 2] [--json out.json]

The slice store is made in a temporary folder by the pipeline's own code: synthetic
subjects (`generate_subject`), cropped and resized (`extract_slices`) and z-scored to
float16 (`normalize_slices`), at `--image-size` (128 by default). Items are drawn as
training draws them, `(index, sample_seed)` pairs, so every sample is reseeded. For
each worker count: one untimed warm-up pass (starts the persistent workers), then
`--repeats` timed passes of `--slices` slices; the median is reported. A line with all
augmentations off (every p = 0) gives the cost of reading and collating alone.
With workers = 0 the batches are collated in the main process with its torch threads: on
a loaded machine, two intra-op threads make `torch.stack` of a batch take tens of ms
(against < 1 ms with one), so `--threads 1` is worth comparing.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, Sampler

from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import extract_slices, normalize_slices
from brainseg.data.synthetic import generate_subject
from brainseg.io.atomic import write_text
from brainseg.training.data import SliceDataset, build_augmentation

log = logging.getLogger("bench_loader")
REPO = Path(__file__).resolve().parents[1]


class SeededSampler(Sampler):
    """`n` random `(index, sample_seed)` pairs per pass, a new draw at every pass."""

    def __init__(self, size: int, n: int, seed: int) -> None:
        self.size, self.n, self.seed, self.epoch = size, n, seed, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        idx = rng.integers(0, self.size, self.n)
        seeds = rng.integers(0, 2**31, self.n)
        return iter(zip(idx.tolist(), seeds.tolist(), strict=True))


def write_slice_store(root: Path, n_subjects: int = 3, image_size: int = 128,
                      seed: int = 0) -> list[Path]:
    """Synthetic subjects through extract and normalize, as `<root>/SYN-<i>/{image,label}.npy`."""
    folders = []
    for index in range(n_subjects):
        subject = generate_subject(seed, index)
        image = np.stack([subject[m] for m in MODALITIES]).astype(np.float32)
        slices, labels, brain, _ = extract_slices(image, subject["seg"], image_size, 4, 64)
        normalized, _ = normalize_slices(slices, brain, (0.5, 99.5))
        folder = root / f"SYN-{index:03d}"
        folder.mkdir(parents=True)
        np.save(folder / "image.npy", normalized)
        np.save(folder / "label.npy", labels)
        folders.append(folder)
    return folders


def loader_throughput(folders: list[Path], augment_cfg: dict[str, Any], workers: int,
                      batch_size: int = 16, n_slices: int = 512, repeats: int = 3,
                      seed: int = 0) -> dict[str, Any]:
    """Slices per second through a DataLoader over `SliceDataset` with augmentation.

    Args:
        folders: slice folders (`image.npy`, `label.npy`).
        augment_cfg: the `train.augment` params.
        workers: DataLoader worker processes (persistent).
        batch_size: slices per batch.
        n_slices: slices per timed pass.
        repeats: timed passes (after one untimed warm-up pass).
        seed: seed of the transform and of the drawn (index, seed) pairs.

    Returns:
        {"workers", "batch_size", "slices", "runs" (slices/s of each pass), "median"}.
    """
    dataset = SliceDataset(folders, build_augmentation(augment_cfg, seed))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        sampler=SeededSampler(len(dataset), n_slices, seed),
                        persistent_workers=workers > 0)
    runs = []
    for rep in range(repeats + 1):
        start, count = time.perf_counter(), 0
        for image, _ in loader:
            count += len(image)
        if rep:  # the first pass starts the workers and warms the page cache
            runs.append(count / (time.perf_counter() - start))
    del loader
    return {"workers": workers, "batch_size": batch_size, "slices": n_slices,
            "runs": runs, "median": statistics.median(runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml",
                        help="params file whose train.augment is timed")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--slices", type=int, default=512, help="slices per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--subjects", type=int, default=3, help="synthetic subjects in the store")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--threads", type=int, help="torch threads of the main process "
                        "(collation runs there when workers = 0); default: torch's own")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    augment = yaml.safe_load(args.params.read_text())["train"]["augment"]
    off = {key: {**value, "p": 0.0} for key, value in augment.items()}
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        folders = write_slice_store(Path(tmp), args.subjects, args.image_size)
        n = sum(len(np.load(f / "label.npy", mmap_mode="r")) for f in folders)
        log.info("store: %d subjects, %d slices of %d px in %.1f s", len(folders), n,
                 args.image_size, time.perf_counter() - start)
        for name, cfg in (("augment", augment), ("no augmentation", off)):
            for workers in args.workers:
                row = loader_throughput(folders, cfg, workers, args.batch_size, args.slices,
                                        args.repeats)
                row["setting"] = name
                results.append(row)
                log.info("%-15s workers %d: %7.0f slices/s (median of %s)", name, workers,
                         row["median"], ", ".join(f"{r:.0f}" for r in row["runs"]))
    if args.json:
        info = {"machine": platform.node(), "cpu": platform.processor() or platform.machine(),
                "cpus": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d"),
                "image_size": args.image_size, "results": results}
        write_text(args.json, json.dumps(info, indent=1) + "\n")


if __name__ == "__main__":
    main()
