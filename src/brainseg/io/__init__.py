"""Files: NIfTI, atomic writes, checksums, downloads, folder listing, reorientation."""
