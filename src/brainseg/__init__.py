"""brainseg: BraTS glioma segmentation from NIfTI to a trained 2D U-Net, run by Snakemake or DVC."""

from __future__ import annotations

__version__ = "0.1.0"
