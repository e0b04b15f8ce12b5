"""The internal modality keys: the four MRI contrasts, in the channel order of every image.

Also the five file keys of a subject folder in the internal (BraTS 2020) layout,
`<subject>_<key>.nii.gz`. Imported by the Snakefile at parse time: no heavy imports here.
"""

from __future__ import annotations

#: Channel order of every (4, x, y, z) image and (s, 4, h, w) slice stack.
MODALITIES: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")
#: File keys of an internal subject folder: the modalities and the label map.
BRATS_KEYS: tuple[str, ...] = (*MODALITIES, "seg")
