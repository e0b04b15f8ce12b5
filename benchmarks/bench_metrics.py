"""Seconds per subject for every metric of `evaluate` (3 regions, 240 x 240 x 155, one core).

Run: taskset -c 0 .venv/bin/python -m benchmarks.bench_metrics [--repeats 7]
Results: section `metrics` of benchmarks/results/latest.json.

Two realistic pairs of label maps, each timed `--repeats` times (median reported):
- real: tests/data/real/TCGA-DU-7294's reference (its label-1 voxels next to edema
  relabelled 4, so that ET is not empty) against a perturbed copy (shifted by a few
  voxels, boundary voxels flipped at random);
- blob: a large synthetic tumour (WT about 240 cm³, ET rim, necrotic centre) against a
  smaller, shifted, noisy one: the largest box the distance transforms see in BraTS.
The target is < 0.5 s per subject for the whole-volume metrics (`region_metrics`: the
label-to-region conversion, the confusion counts, HD95 and the volumes), and < 1 s for
those plus the lesion-wise metrics (`region_lesion_metrics`, the default rules), all that
`evaluate` computes per subject. No torch import.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

from benchmarks.common import Figure, record, setup_logging
from brainseg.evaluation.lesions import region_lesion_metrics
from brainseg.evaluation.metrics import region_metrics

log = logging.getLogger("bench_metrics")
REAL_DIR = Path(__file__).resolve().parents[1] / "tests/data/real/TCGA-DU-7294"
REAL_SEG = REAL_DIR / "TCGA-DU-7294_seg.nii.gz"
TARGET_S = 0.5
TARGET_ALL_S = 1.0


def perturb(labels: np.ndarray, rng: np.random.Generator, shift: tuple[int, ...]) -> np.ndarray:
    """Shift a label map and flip a random third of the voxels on the tumour boundary."""
    out = np.roll(labels, shift, axis=(0, 1, 2))
    tumour = out > 0
    band = ndimage.binary_dilation(tumour) & ~ndimage.binary_erosion(tumour)
    flip = band & (rng.random(out.shape) < 0.33)
    out[flip & tumour] = 0
    out[flip & ~tumour] = 2
    return out


def real_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    img = nib.load(REAL_SEG)
    ref = np.asarray(img.dataobj).astype(np.uint8)
    rim = (ref == 1) & ndimage.binary_dilation(ref == 2, iterations=2)
    ref[rim] = 4
    spacing = tuple(float(z) for z in img.header.get_zooms()[:3])
    return perturb(ref, rng, (2, -1, 1)), ref, spacing


def ellipsoid(shape: tuple[int, ...], centre: tuple[float, ...],
              radii: tuple[float, ...]) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True)) <= 1


def blob_labels(shape: tuple[int, ...], centre: tuple[float, ...], scale: float) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[ellipsoid(shape, centre, (45 * scale, 40 * scale, 32 * scale))] = 2
    labels[ellipsoid(shape, centre, (25 * scale, 22 * scale, 18 * scale))] = 4
    labels[ellipsoid(shape, centre, (17 * scale, 15 * scale, 12 * scale))] = 1
    return labels


def blob_pair(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    shape = (240, 240, 155)
    ref = blob_labels(shape, (120, 118, 75), 1.0)
    pred = perturb(blob_labels(shape, (124, 115, 78), 0.92), rng, (0, 0, 0))
    return pred, ref, (1.0, 1.0, 1.0)


def all_metrics(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...]) -> None:
    """Whole-volume and lesion-wise: every metric `evaluate` writes for one subject."""
    region_metrics(pred, ref, spacing)
    region_lesion_metrics(pred, ref, spacing)


def time_pair(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, ...],
              repeats: int, metrics=region_metrics) -> dict[str, float]:
    metrics(pred, ref, spacing)  # warm-up (imports, caches)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        metrics(pred, ref, spacing)
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "wt_cm3": float(np.count_nonzero(ref) * np.prod(spacing) / 1000)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per pair")
    parser.add_argument("--seed", type=int, default=0, help="seed of the perturbations")
    args = parser.parse_args()
    setup_logging()
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, make in (("real", real_pair), ("blob", blob_pair)):
        pair = make(rng)
        for kind, metrics, target in (("", region_metrics, TARGET_S),
                                      ("_lesionwise", all_metrics, TARGET_ALL_S)):
            result = time_pair(*pair, repeats=args.repeats, metrics=metrics)
            results[name + kind] = (result, target)
            log.info("%-15s (WT %.0f cm3): median %.3f s per subject (min %.3f, max %.3f) "
                     "over %d; %.2fx the %.1f s target", name + kind, result["wt_cm3"],
                     result["median_s"], result["min_s"], result["max_s"], args.repeats,
                     result["median_s"] / target, target)
    command = "taskset -c 0 python -m benchmarks.bench_metrics"
    what = {"": "whole-volume", "_lesionwise": "whole-volume and lesion-wise"}
    record("metrics", [
        Figure(f"metrics.{name}", f"{what[name[4:]]} metrics, 3 regions, {name[:4]} pair",
               r["median_s"], "s/subject", target=f"< {target} s", met=r["median_s"] < target,
               repeats=args.repeats, command=command,
               note=f"WT {r['wt_cm3']:.0f} cm3; one core", extra=r)
        for name, (r, target) in results.items()])


if __name__ == "__main__":
    main()
