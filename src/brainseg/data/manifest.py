"""data/raw/manifest.csv: one row per subject with files, geometry, checksums and tumor size.

Besides the geometry, tumour size and each file with its SHA-256, a row names the subject's
`modalities` (`t1 t1ce t2 flair`, or `t1 t1ce flair` for LGG) and the `regions` its label
map annotates (`WT TC ET`, or `WT`); the voxel counts of regions it does not annotate, and
the file and checksum of modalities it lacks, are `n/a` (`NOT_AVAILABLE`), never 0.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from brainseg.data.labels import NOT_AVAILABLE, REGIONS, header_marks, region_mask
from brainseg.data.layouts import brats_files, to_internal_labels
from brainseg.data.modalities import BRATS_KEYS, MODALITIES
from brainseg.errors import BrainsegError
from brainseg.io.atomic import atomic_file
from brainseg.io.hashing import file_digests
from brainseg.io.nifti import load_nifti, voxel_spacing
from brainseg.parallel import default_jobs

if TYPE_CHECKING:  # pandas is slow to import: one download job per subject skips it
    import pandas as pd


def manifest_row(subject_dir: Path, source: str) -> dict:
    """Describe one subject folder (reads the label map header and data only)."""
    files = brats_files(subject_dir.parent, "brats2020", subject_dir.name, modalities=None)
    if "seg" not in files:
        raise BrainsegError(f"{subject_dir}: missing label map {subject_dir.name}_seg.nii.gz")
    data, seg_img = load_nifti(files["seg"], native=True)
    seg = to_internal_labels(data, "brats2020", files["seg"])
    regions = header_marks(seg_img.header, str(files["seg"]))[1]
    spacing = voxel_spacing(seg_img.header)
    wt, tc, et = (int(np.count_nonzero(region_mask(seg, r))) for r in REGIONS)
    row = {
        "subject": subject_dir.name,
        "source": source,
        "shape": "x".join(str(s) for s in seg.shape),
        "spacing": "x".join(f"{s:g}" for s in spacing),
        "wt_voxels": wt,
        "tc_voxels": tc if "TC" in regions else None,
        "et_voxels": et if "ET" in regions else None,
        "wt_cm3": round(wt * float(np.prod(spacing)) / 1000.0, 3),
    }
    for key in BRATS_KEYS:
        if key not in files:
            row[f"{key}_file"] = row[f"{key}_sha256"] = None
            continue
        row[f"{key}_file"] = files[key].relative_to(subject_dir.parent).as_posix()
        (row[f"{key}_sha256"],) = file_digests(files[key], "sha256")
    row["modalities"] = " ".join(m for m in MODALITIES if m in files)
    row["regions"] = " ".join(regions)
    return row


def write_manifest(raw_dir: str | Path, subjects: list[str], source: str,
                   jobs: int = 0) -> pd.DataFrame:
    """Write `<raw_dir>/manifest.csv` for the given subjects (sorted), atomically.

    The rows are read in `jobs` threads (0: one per usable core): decoding, label mapping
    and hashing all run outside the GIL, so threads scale without starting processes.
    """
    raw_dir = Path(raw_dir)
    missing = [s for s in subjects if not (raw_dir / s).is_dir()]
    if missing:
        raise BrainsegError(f"{raw_dir}: subject folders missing: {', '.join(missing[:5])}")
    with ThreadPoolExecutor(max_workers=default_jobs(jobs)) as pool:
        rows = list(pool.map(lambda s: manifest_row(raw_dir / s, source), sorted(subjects)))
    import pandas as pd

    table = pd.DataFrame(rows)
    with atomic_file(raw_dir / "manifest.csv") as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n", na_rep=NOT_AVAILABLE)
    return table


def read_manifest(path: str | Path) -> pd.DataFrame:
    """Read a manifest written by `write_manifest`."""
    path = Path(path)
    if not path.is_file():
        raise BrainsegError(f"{path}: manifest not found (run `brainseg download` first)")
    import pandas as pd

    table = pd.read_csv(path)
    if "subject" not in table or "wt_voxels" not in table:
        raise BrainsegError(f"{path}: not a brainseg manifest (columns: {list(table.columns)})")
    return table
