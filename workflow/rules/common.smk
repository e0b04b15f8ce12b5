# Helpers shared by the rules (no lambdas in rules: functions live here).
import os
from functools import lru_cache

from snakemake.exceptions import WorkflowError

from brainseg.data.sources import DEFAULT_SOURCE_DIR
from brainseg.params import read_yaml
from brainseg.data.subjects import raw_modalities, subject_ids
from brainseg.reporting.names import FIGURES as FIGURE_FILES

# Every `brainseg` command reads the params file Snakemake's config came from:
# params.yaml, or the one file given with --configfile (a complete params file, such as
# workflow/presets/real.yaml). --config overrides, or a partial --configfile, would not
# reach the commands, so they are refused (use `brainseg params --set`, `dvc exp run -S`
# or edit the file).
PARAMS = (
    os.path.relpath(workflow.overwrite_configfiles[-1])
    if workflow.overwrite_configfiles
    else "params.yaml"
)
with open(PARAMS) as _fh:
    if read_yaml(_fh) != config:
        raise ValueError(
            f"Snakemake config differs from {PARAMS}: --config overrides and partial "
            f"--configfile files are not passed to the brainseg commands; give one complete "
            f"params file (brainseg params --base params.yaml --set KEY=VALUE --out FILE)"
        )

REAL_DIR = config["realism"][
    "real_dir"
]  # the real scans the synthetic cohort is compared with
# a url source is cached and unpacked here (rule fetch)
SOURCE_DIR = DEFAULT_SOURCE_DIR.as_posix()
# Threads asked for by train and evaluate: Snakemake lowers this to --cores, and
# brainseg lowers it again to the cores the machine has.
MAX_THREADS = 8
# Threads of each cross-validation fold's training (also in dvc.yaml's train_fold): fixed,
# so that the fold models are the same bytes whatever the cores (see rule train_fold).
FOLD_THREADS = 1
# The raw files of a subject: its modalities (all four, or t1 t1ce flair for LGG), its labels.
RAW_KEYS = [*raw_modalities(config["download"], SOURCE_DIR), "seg"]
FIGURES = expand("reports/figures/{name}", name=FIGURE_FILES)
# realism compares a synthetic cohort with real scans: nothing to compare on real data
REALISM = (
    ["reports/realism.json"] if config["download"]["source"] == "synthetic" else []
)
# anomaly (optional): its outputs in the all target when anomaly.enabled; one thread, fixed
# (also in dvc.yaml), so that the autoencoder is the same bytes whatever the cores
ANOMALY = (
    ["reports/anomaly.json", "reports/anomaly_subjects.csv", "models/autoencoder.pt"]
    if config["anomaly"]["enabled"]
    else []
)
ANOMALY_THREADS = 1
FOLDS_DIR = "models/folds"  # cross-validation: one model per fold, FOLDS_DIR/<fold>/
FOLDS = list(range(config["split"]["folds"])) if config["split"]["folds"] >= 2 else []


wildcard_constraints:
    subject=r"[A-Za-z0-9._-]+",
    fold=r"\d+",


def hold_runner_lock():
    """In the onstart hook: refuse to run while `dvc repro` runs a stage in this working
    copy (brainseg.runlock), and keep `dvc repro` out until this run ends."""
    from brainseg.errors import BrainsegError
    from brainseg.runlock import hold_for_snakemake

    try:
        hold_for_snakemake()
    except BrainsegError as exc:
        raise WorkflowError(str(exc)) from None


def train_launch(wildcards, threads, resources):
    """How a training job starts: `brainseg train`, or with a `processes` resource of N > 1
    (`set-resources: train: processes: 4` in a profile, or `--set-resources
    train:processes=4`) `torchrun` with N data-parallel processes on the job's node (one per
    GPU; gloo on CPU), each given threads // N of the job's threads.

    With a `nodes` resource of M > 1 (a Slurm job over M nodes; it also needs `tasks: M`
    and `mpi: srun`, so that the job runs this command once, not under srun), `srun`
    starts one `torchrun` per node, each with N processes: M x N in all, rank 0's node
    (the batch host, node rank 0) hosting the rendezvous on a port of the job's id."""
    processes = int(getattr(resources, "processes", 1))
    nodes = int(getattr(resources, "nodes", 1))
    per_process = max(1, threads // processes)
    if nodes > 1:
        mpi, tasks = getattr(resources, "mpi", None), getattr(resources, "tasks", None)
        if not mpi or tasks is None or int(tasks) != nodes:
            raise WorkflowError(
                f"training on nodes={nodes} needs tasks={nodes} (one per node) and "
                f"mpi=srun among its resources, set with nodes in the profile's "
                f"set-resources (got tasks={tasks}, mpi={mpi})"
            )
        # every node's torchrun: its node rank and the rendezvous address from srun's
        # environment, so the command is one string for all nodes (sh -c, single quotes)
        return (
            f"{mpi} --nodes {nodes} --ntasks-per-node 1 --cpus-per-task {threads}"
            f" --kill-on-bad-exit=1 sh -c '"
            f'exec torchrun --nnodes {nodes} --node_rank "$SLURM_NODEID"'
            f' --nproc_per_node {processes} --master_addr "$SLURM_LAUNCH_NODE_IPADDR"'
            f" --master_port $((29500 + SLURM_JOB_ID % 20000))"
            f' -m brainseg train --threads {per_process} "$@"\' torchrun'
        )
    if processes <= 1:
        return f"brainseg train --threads {per_process}"
    return (
        f"torchrun --standalone --nproc_per_node {processes} -m brainseg train"
        f" --threads {per_process}"
    )


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
    """The raw files of one subject, by key."""
    s = wildcards.subject
    return {key: f"data/raw/{s}/{s}_{key}.nii.gz" for key in RAW_KEYS}


def all_raw(wildcards):
    return expand("data/raw/{s}/{s}_{key}.nii.gz", s=cohort(), key=RAW_KEYS)


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


def train_inputs(wildcards):
    """The slices and splits; with cross-validation, the trained folds instead of the slices."""
    if not FOLDS:
        return {"slices": all_slices(wildcards), "splits": "data/splits.csv"}
    return {
        "folds": expand(
            f"{FOLDS_DIR}/{{fold}}/{{name}}",
            fold=FOLDS,
            name=["model.pt", "mlflow_run.json", "train_history.csv"],
        ),
        "splits": "data/splits.csv",
    }
