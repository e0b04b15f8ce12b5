"""NIfTI decode floor against our extract + normalize, seconds per subject of the default cohort.

Run: .venv/bin/python -m benchmarks.bench_io [--raw-dir data/raw] [--subjects 24] [--repeats 3]

The cohort is the default one (params.yaml's download section: 24 synthetic subjects of
240 x 240 x 155), generated in a temporary folder by `brainseg download`, unless
`--raw-dir` names a finished download. For each subject, in this process (one job, as
Snakemake runs the per-subject rules), median of `--repeats` (one untimed warm-up run
of everything on the first subject only):
- floor, zlib: bare decode of the subject's five .nii.gz files into numpy arrays with
  nibabel's default reader (`np.asanyarray(nib.load(f).dataobj)`);
- floor, ISA-L: the header parsed by nibabel, the whole file inflated by one
  `isal.igzip.decompress` call and the voxels viewed in place with `np.frombuffer`;
- ours: `extract_subject` (decode, validate, crop, resize, write .npy) followed by
  `normalize_subject` (read, percentile clip, z-score, write float16), the two
  stages' per-subject work with their file output.
The figure is the median over subjects. Target: ours <= 1.5 x (floor + 0.12 s),
0.12 s being the cost of a careful normalize + resize at this size.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.common import LATEST, REPO, Figure, make_cohort, median_time, record, setup_logging
from brainseg.data.extract import extract_subject
from brainseg.data.normalize import normalize_subject
from brainseg.io.nifti import decode_nifti
from brainseg.params import load_params

log = logging.getLogger("bench_io")
RESIZE_NORMALIZE_S = 0.12  # the allowance for a careful normalize + resize


def decode_zlib(files: list[Path]) -> None:
    for path in files:
        np.asanyarray(nib.load(path).dataobj)


def decode_isal(files: list[Path]) -> None:
    """`brainseg.io.nifti.decode_nifti`: header parsed by nibabel, the file inflated in one
    ISA-L call, the voxels viewed in place (no validation, no float32 conversion)."""
    for path in files:
        decode_nifti(path)


def subject_figures(raw: Path, subject: str, work: Path, params: dict, repeats: int,
                    warmup: int) -> dict:
    """Median seconds of each way of reading one subject (after `warmup` untimed runs)."""
    files = sorted((raw / subject).glob("*.nii.gz"))
    zlib_s, _ = median_time(lambda: decode_zlib(files), repeats, warmup)
    isal_s, _ = median_time(lambda: decode_isal(files), repeats, warmup)

    extract_times, normalize_times = [], []

    def ours() -> None:
        start = time.perf_counter()
        extract_subject(subject, raw, work / "extracted", params["extract"])
        middle = time.perf_counter()
        normalize_subject(subject, work / "extracted", work / "slices", params["normalize"])
        extract_times.append(middle - start)
        normalize_times.append(time.perf_counter() - middle)

    ours_s, _ = median_time(ours, repeats, warmup)
    return {"zlib": zlib_s, "isal": isal_s, "ours": ours_s,
            "extract": statistics.median(extract_times[warmup:]),
            "normalize": statistics.median(normalize_times[warmup:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml",
                        help="params whose download/extract/normalize sections are used")
    parser.add_argument("--raw-dir", type=Path, default=None,
                        help="a finished download (data/raw); default: generate the cohort")
    parser.add_argument("--subjects", type=int, default=24,
                        help="subjects to generate and time (default: the default cohort's 24)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per subject")
    parser.add_argument("--results", type=Path, default=LATEST,
                        help="results file to merge into (default benchmarks/results/latest.json)")
    args = parser.parse_args()
    setup_logging()
    params = load_params(args.params)
    with tempfile.TemporaryDirectory(prefix="bench_io_") as tmp:
        work = Path(tmp)
        raw = args.raw_dir or make_cohort(work, args.params, args.subjects)
        subjects = sorted(p.name for p in raw.iterdir() if p.is_dir())[: args.subjects]
        shape = nib.load(next((raw / subjects[0]).glob("*_t1.nii.gz"))).shape
        # One untimed run of everything on the first subject (imports, caches); the files
        # are then in the page cache, as the stage finds them after download.
        per_subject = {s: subject_figures(raw, s, work, params, args.repeats, int(i == 0))
                       for i, s in enumerate(subjects)}
    med = {k: statistics.median(v[k] for v in per_subject.values())
           for k in ("zlib", "isal", "ours", "extract", "normalize")}
    command = "python -m benchmarks.bench_io"
    note = (f"median over {len(subjects)} subjects of {shape[0]}x{shape[1]}x{shape[2]} "
            f"(5 files each), {args.repeats} repeats each after one warm-up run on the first; "
            "one process")
    figures = [
        Figure("io.decode_zlib", "NIfTI decode floor, nibabel zlib", med["zlib"], "s/subject",
               repeats=args.repeats, command=command, note=note),
        Figure("io.decode_isal", "NIfTI decode floor, ISA-L gzip", med["isal"], "s/subject",
               reference=med["zlib"], reference_label="zlib floor",
               ratio=med["isal"] / med["zlib"], ratio_label="x zlib", repeats=args.repeats,
               command=command, note=note),
    ]
    for backend in ("zlib", "isal"):
        allowance = med[backend] + RESIZE_NORMALIZE_S
        ratio = med["ours"] / allowance
        figures.append(Figure(
            f"io.extract_normalize_vs_{backend}", f"extract + normalize vs {backend} floor",
            med["ours"], "s/subject", reference=allowance,
            reference_label=f"{backend} decode + {RESIZE_NORMALIZE_S} s", ratio=ratio,
            ratio_label="x (decode + 0.12 s)", target="<= 1.5x", met=ratio <= 1.5,
            repeats=args.repeats, command=command,
            note=f"{note}; extract {med['extract']:.3f} s + normalize {med['normalize']:.3f} s "
                 f"(our extract decodes with ISA-L)",
            extra={"per_subject": per_subject} if backend == "zlib" else {}))
    record("io", figures, path=args.results)


if __name__ == "__main__":
    sys.exit(main())
