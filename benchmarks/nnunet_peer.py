"""nnU-Net v2 as a peer, through its own CLIs: dataset conversion, a budgeted trainer, runs.

Used by benchmarks.bench_peers (preprocessing time on the synthetic cohort) and
benchmarks.bench_peers_real (training, prediction and Dice on real scans). nnU-Net reads its
folders from the environment variables `nnUNet_raw`, `nnUNet_preprocessed` and
`nnUNet_results`, and finds trainers outside its package through `nnUNet_extTrainer`:
`env()` sets all of them for one work folder, and every command gets it explicitly.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import nibabel as nib
import numpy as np

log = logging.getLogger("benchmarks.nnunet")

MODALITIES = ("t1", "t1ce", "t2", "flair")  # nnU-Net channels 0000..0003

# BraTS values -> nnU-Net labels. "plain": consecutive labels, one softmax class each.
# "regions": nnU-Net's own BraTS conversion (dataset_conversion/Dataset137_BraTS21.py):
# edema 1, necrosis 2, enhancing 3, trained as the regions WT (1, 2, 3), TC (2, 3) and ET (3)
# with sigmoid outputs; a prediction is written with those values (`regions_class_order`).
LABELS = {"plain": {0: 0, 1: 1, 2: 2, 4: 3}, "regions": {0: 0, 2: 1, 1: 2, 4: 3}}
DATASET_LABELS = {
    "plain": {"background": 0, "necrosis": 1, "edema": 2, "enhancing": 3},
    "regions": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                "enhancing tumor": 3},
}

# A trainer of nnU-Net's own kind (like its nnUNetTrainer_5epochs), with a budget set here:
# the number of epochs and of iterations per epoch, the torch threads (nnUNetv2_train on a
# CPU takes every core of the machine, not those this process may use), timings, and no
# final validation (the benchmark predicts the held-out subjects with nnUNetv2_predict).
TRAINER = '''"""Written by brainseg's peer benchmark: nnUNetTrainer with a set training length."""
import json
import os
import time

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class {name}(nnUNetTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = {epochs}
        self.num_iterations_per_epoch = {iterations}
        self.num_val_iterations_per_epoch = {val_iterations}
        if device.type == "cpu":
            torch.set_num_threads(len(os.sched_getaffinity(0)))
        self.brainseg_timing = {{"epochs_s": []}}

    def _dump_timing(self):
        with open(os.path.join(self.output_folder, "brainseg_timing.json"), "w") as f:
            json.dump(self.brainseg_timing, f)

    def on_train_epoch_start(self):
        self.brainseg_epoch_start = time.perf_counter()
        super().on_train_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        self.brainseg_timing["epochs_s"].append(time.perf_counter() - self.brainseg_epoch_start)

    def run_training(self):
        start = time.perf_counter()
        super().run_training()
        self.brainseg_timing["train_s"] = time.perf_counter() - start
        self._dump_timing()

    def perform_actual_validation(self, save_probabilities=False):
        pass  # the benchmark predicts the held-out subjects with nnUNetv2_predict, timed
'''


def trainer_name(epochs: int, iterations: int) -> str:
    return f"nnUNetTrainer_brainseg_e{epochs}_i{iterations}"


def write_trainer(folder: Path, epochs: int, iterations: int, val_iterations: int = 1) -> str:
    """Write the budgeted trainer into `folder` (nnUNet_extTrainer); returns its name."""
    name = trainer_name(epochs, iterations)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(TRAINER.format(
        name=name, epochs=epochs, iterations=iterations, val_iterations=val_iterations))
    return name


def write_plans(preprocessed: Path, batch_size: int | None) -> str:
    """The plans identifier to train with: nnU-Net's own (`None`), or a copy of them with
    only the 2d batch size changed (the edit nnU-Net's plans documentation describes);
    the preprocessed data are the same."""
    if batch_size is None:
        return "nnUNetPlans"
    plans = json.loads((preprocessed / "nnUNetPlans.json").read_text())
    name = f"nnUNetPlans_bs{batch_size}"
    plans["plans_name"] = name
    plans["configurations"]["2d"]["batch_size"] = batch_size
    (preprocessed / f"{name}.json").write_text(json.dumps(plans, indent=1) + "\n")
    return name


def executable(name: str) -> list[str]:
    """The command line of nnU-Net's console script `name` (e.g. nnUNetv2_train): its own
    entry point, run by this module so that `declare_torchvision_ops` comes first."""
    from importlib.metadata import entry_points

    if not entry_points(group="console_scripts", name=name):
        raise SystemExit(f"{name} not found: install the peers with `make bench-peers-install`")
    return [sys.executable, "-m", "benchmarks.nnunet_peer", name]


def main(argv: list[str]) -> None:
    """`python -m benchmarks.nnunet_peer <console script> [args]`: that nnU-Net command."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name=argv[0])
    declare_torchvision_ops()
    sys.argv = argv
    script.load()()


def env(work: Path, augment_processes: int = 1) -> dict[str, str]:
    """The environment of nnU-Net's commands on the work folder `work`.

    `augment_processes`: nnUNet_n_proc_DA (0: augmentation in the training process, as ours
    runs it; the planner needs at least 1, it sets torch's threads from it)."""
    return {**os.environ, "nnUNet_raw": str(work / "nnUNet_raw"),
            "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
            "nnUNet_results": str(work / "nnUNet_results"),
            "nnUNet_extTrainer": str(work / "trainers"),
            # one export process and no torch.compile (nnU-Net disables it on CPU)
            "nnUNet_n_proc_DA": str(augment_processes), "nnUNet_def_n_proc": "1",
            "nnUNet_compile": "f"}


class Measured(NamedTuple):
    seconds: float  # wall time of the command
    max_rss_mib: float  # peak resident memory of its largest process (MiB)


def measure(cmd: list[str], env: dict[str, str] | None = None, stdout: Any = None) -> Measured:
    """Run `cmd` to the end (raises on a non-zero exit); its wall time and peak memory
    (`os.wait4`: the largest of the command and the children it waited for)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout or subprocess.DEVNULL,
                            stderr=subprocess.STDOUT if stdout else subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise subprocess.CalledProcessError(proc.returncode, cmd)
    return Measured(seconds, usage.ru_maxrss / 1024)


def run(cmd: list[str], work: Path, log_file: Path | None = None,
        augment_processes: int = 1) -> Measured:
    """Run one nnU-Net command on `work`'s folders (output to `log_file`); raises on failure."""
    log.info("$ %s", " ".join(cmd))
    if log_file is None:
        return measure(cmd, env(work, augment_processes))
    with log_file.open("w") as out:
        return measure(cmd, env(work, augment_processes), out)


def subjects_of(raw_dir: Path) -> list[str]:
    """Subject folders of a raw folder (the ones with a segmentation), sorted."""
    names = sorted(p.name for p in raw_dir.iterdir() if (p / f"{p.name}_seg.nii.gz").is_file())
    if not names:
        raise SystemExit(f"{raw_dir}: no <subject>/<subject>_seg.nii.gz in this raw folder")
    return names


def to_raw(raw_dir: Path, nnunet_raw: Path, dataset: str, labels: str = "plain") -> Path:
    """Write nnU-Net's raw dataset `dataset` (Dataset<ID>_<NAME>) from our raw folder:
    imagesTr linked, labelsTr converted by LABELS[labels], dataset.json; its folder."""
    folder = nnunet_raw / dataset
    (folder / "imagesTr").mkdir(parents=True)
    (folder / "labelsTr").mkdir()
    lut = np.zeros(5, np.uint8)
    for value, new in LABELS[labels].items():
        lut[value] = new
    subjects = subjects_of(raw_dir)
    for subject in subjects:
        src = raw_dir / subject
        for k, modality in enumerate(MODALITIES):
            link = folder / "imagesTr" / f"{subject}_{k:04d}.nii.gz"
            link.symlink_to((src / f"{subject}_{modality}.nii.gz").resolve())
        seg = nib.load(src / f"{subject}_seg.nii.gz")
        out = nib.Nifti1Image(lut[np.asarray(seg.dataobj).astype(np.intp)], seg.affine,
                              seg.header)
        out.set_data_dtype(np.uint8)
        nib.save(out, folder / "labelsTr" / f"{subject}.nii.gz")
    meta = {"channel_names": {str(k): m.upper() for k, m in enumerate(MODALITIES)},
            "labels": DATASET_LABELS[labels], "numTraining": len(subjects),
            "file_ending": ".nii.gz", "name": dataset.split("_", 1)[1]}
    if labels == "regions":
        meta["regions_class_order"] = [1, 2, 3]
    (folder / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n")
    return folder


def to_brats(labels: np.ndarray, kind: str = "regions") -> np.ndarray:
    """nnU-Net's predicted labels (LABELS[kind] values) back to BraTS values 0/1/2/4."""
    lut = np.zeros(4, np.uint8)
    for value, new in LABELS[kind].items():
        lut[new] = value
    return lut[labels.astype(np.intp)]


def write_splits(preprocessed: Path, folds: list[dict[str, list[str]]]) -> None:
    """Our folds as nnU-Net's splits_final.json ([{"train": [...], "val": [...]}, ...]), so
    that its fold f trains and validates on the subjects of our fold f."""
    preprocessed.mkdir(parents=True, exist_ok=True)
    (preprocessed / "splits_final.json").write_text(json.dumps(folds, indent=1) + "\n")


def declare_torchvision_ops() -> None:
    """Let a CUDA build of torchvision import on a CPU build of torch (smp needs its models).

    PyPI's torchvision 0.28.0 (the release for torch 2.13.0) is built for CUDA torch: on the
    CPU torch of requirements.lock its C operators cannot load, and its module
    `_meta_registrations` then fails on registering fake kernels of `torchvision::nms` and
    `torchvision::qnms`, which do not exist. Declaring those two schemas first lets the Python
    part import; the C operators (nms, roi_align, ...) stay unavailable, and neither smp's
    Unet nor its resnet18 encoder uses them. Called before anything imports torchvision
    (MONAI and MLflow may try to).
    """
    import importlib.util

    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None or hasattr(torch.ops.torchvision, "nms"):
        return  # no torchvision, or its operators are there already
    for library in Path(spec.origin).parent.glob("_C*.so"):
        try:
            torch.ops.load_library(library)  # what torchvision does: works for a matching build
            return
        except OSError:
            pass
    lib = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _KEEP.append(lib)
    log.info("torchvision is a CUDA build on CPU torch: its C operators are unavailable "
             "(declared nms/qnms so that its Python part imports)")


_KEEP: list[Any] = []  # the Library above must outlive the call that made it


if __name__ == "__main__":
    main(sys.argv[1:])
