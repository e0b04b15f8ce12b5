# Helpers shared by the rules (no lambdas in rules: functions live here).
from functools import lru_cache

import yaml

from brainseg.data.subjects import subject_ids
from brainseg.reporting.names import FIGURES as FIGURE_FILES

# Every `brainseg` command reads this file; Snakemake's config is the same file,
# validated by the Snakefile. Overrides with --config would not reach the commands,
# so they are refused (use `dvc exp run -S` or edit params.yaml).
PARAMS = "params.yaml"
with open(PARAMS) as _fh:
    if yaml.safe_load(_fh) != config:
        raise ValueError(
            f"Snakemake config differs from {PARAMS}: --config/--configfile overrides are "
            f"not passed to the brainseg commands; edit {PARAMS} instead"
        )

REAL_CASE = "tests/data/real/TCGA-DU-7294"  # the real scan the synthetic cohort is compared with
SOURCE_DIR = "data/source"  # a url source is cached and unpacked here (rule fetch)
# Threads asked for by train and evaluate: Snakemake lowers this to --cores, and
# brainseg lowers it again to the cores the machine has.
MAX_THREADS = 8
KEYS = ["t1", "t1ce", "t2", "flair", "seg"]
FIGURES = expand("reports/figures/{name}", name=FIGURE_FILES)


wildcard_constraints:
    subject=r"[A-Za-z0-9._-]+",


@lru_cache(maxsize=1)
def cohort():
    """Subject ids; for a url source they are known once the `fetch` checkpoint ran
    (a manifest source lists them in its file: no checkpoint)."""
    if config["download"]["source"] == "url":
        checkpoints.fetch.get()
    return tuple(subject_ids(config["download"], SOURCE_DIR))


def fetched_source(wildcards):
    """The unpacked archive a subject is ingested from (url source only)."""
    if config["download"]["source"] == "url":
        return checkpoints.fetch.get().output
    return []


def source_manifest(wildcards):
    """The file list a subject is downloaded by (manifest source only)."""
    if config["download"]["source"] == "manifest":
        return config["download"]["manifest"]
    return []


def raw_subject(wildcards):
    """The five raw files of one subject, by key."""
    s = wildcards.subject
    return {key: f"data/raw/{s}/{s}_{key}.nii.gz" for key in KEYS}


def all_raw(wildcards):
    return expand("data/raw/{s}/{s}_{key}.nii.gz", s=cohort(), key=KEYS)


def extracted_subject(wildcards):
    s = wildcards.subject
    return {
        "image": f"data/extracted/{s}/image.npy",
        "label": f"data/extracted/{s}/label.npy",
        "brain": f"data/extracted/{s}/brain.npy",
        "geometry": f"data/extracted/{s}/geometry.json",
    }


def all_slices(wildcards):
    return expand(
        "data/slices/{s}/{name}",
        s=cohort(),
        name=["image.npy", "label.npy", "meta.json"],
    )
