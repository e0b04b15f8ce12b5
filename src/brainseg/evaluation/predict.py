"""`brainseg predict`: segment new patients with a trained model, in their own grid and labels.

Input: a subject folder, its modality files (the four, or those of a model trained on
fewer, e.g. t1 t1ce flair), or a folder of subject folders (batch).
Each subject is reoriented (axis permutations and flips only) to the voxel axes the
model was trained in (`MODEL_AXCODES`, the BraTS grid), segmented with the training
preprocessing (`predict_volume`), and transformed back, so the output NIfTI has the
input's exact shape, affine and header (uint8), with labels in the input's convention:
0/1/2/4 for BraTS 2020/2021 names, 0/1/2/3 for BraTS 2023 names.

A 2D ONNX model (`brainseg export`) predicts without torch: a fresh command then starts
in a fraction of the time a checkpoint's takes.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from brainseg.data.inputs import SubjectFiles, folder_files, listed_files, load_modalities
from brainseg.data.layouts import from_internal_labels
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import SliceGeometry
from brainseg.errors import BrainsegError
from brainseg.evaluation.inference import (
    MLFLOW_SCHEMES,
    is_onnx,
    load_model,
    model_dims,
    model_modalities,
    predict_prepared,
    prepare_volume,
)
from brainseg.evaluation.labelmaps import PostprocessSettings, apply, read_settings
from brainseg.io.listing import subject_folders, visible
from brainseg.io.nifti import SUFFIXES, save_nifti, voxel_spacing
from brainseg.io.orientation import Reorientation
from brainseg.models.arrays import ArrayNetwork
from brainseg.models.logits import Network
from brainseg.parallel import read_ahead
from brainseg.runtime import (
    PRECISIONS,
    add_device_arguments,
    autocast,
    cpu_threads,
    resolve_device,
    resolve_precision,
    set_threads,
)
from brainseg.tracking import add_tracking_argument

log = logging.getLogger(__name__)

LAYOUT_CHOICES: tuple[str, ...] = ("auto", "brats2020", "brats2023")


@dataclass(frozen=True)
class Predictor:
    """A loaded model with the settings of one `predict` call."""

    model: Network
    config: dict[str, Any]
    settings: PostprocessSettings
    batch_size: int = 32
    device: str = "cpu"
    precision: str = "fp32"  # fp32 or bf16 (autocast of the forward passes)


@dataclass(frozen=True)
class SubjectVolume:
    """One subject's inputs, read and turned to the model's axes (`read_subject`)."""

    inputs: SubjectFiles
    image: tuple[np.ndarray, ...]  # the m (x', y', z') volumes as decoded, in the model's axes
    ref: nib.Nifti1Image  # the first file: the grid the prediction is written on
    turn: Reorientation
    # the model's input and its geometry (`prepare_volume`), when prepared ahead (batch)
    prepared: tuple[np.ndarray, SliceGeometry] | None = None


def read_subject(inputs: SubjectFiles) -> SubjectVolume:
    """Read a subject's modality files and turn them to the model's axes.

    Each volume stays as decoded (its dtype, its memory order) and is turned by a view:
    `extract_slices` reads it plane by plane, so a stacked float32 copy (m, x, y, z) and a
    reoriented copy of it would only cost time (they were most of the reading time).

    Raises:
        BrainsegError: an input file is missing, unreadable or on another grid.
    """
    volumes, ref = load_modalities(inputs, native=True)
    turn = Reorientation.of(ref.affine)
    return SubjectVolume(inputs, tuple(turn.apply(v) for v in volumes), ref, turn)


def predict_subject(predictor: Predictor, inputs: SubjectFiles | SubjectVolume,
                    output: Path) -> Path:
    """Segment one subject and write its label map atomically to `output`.

    Returns:
        `output`, a uint8 NIfTI on the first file's grid (shape, affine, header but for the
        display range cal_min/cal_max, reset) with labels in the convention of `inputs.layout`.

    Raises:
        BrainsegError: an input file is missing, unreadable or on another grid.
    """
    volume = inputs if isinstance(inputs, SubjectVolume) else read_subject(inputs)
    normed, geo = volume.prepared or prepare_volume(predictor.config, volume.image)
    with autocast(predictor.precision, predictor.device):
        probs = predict_prepared(predictor.model, predictor.config, normed, geo,
                                 predictor.batch_size, predictor.device,
                                 predictor.settings.flip_tta)
    ref, turn = volume.ref, volume.turn
    # only the voxel volume enters the post-processing: the axis order does not matter
    labels = apply(probs, predictor.settings, voxel_spacing(ref.header))
    labels = from_internal_labels(turn.undo(labels), volume.inputs.layout)
    header = ref.header.copy()
    header["cal_min"], header["cal_max"] = 0, 0  # the scan's display range is not a label's
    save_nifti(output, labels, ref.affine, header)
    log.debug("%s: axes %s, %s labels -> %s", volume.inputs.subject, "".join(turn.source),
              volume.inputs.layout, output)
    return output


def is_nifti_name(path: Path) -> bool:
    return path.name.lower().endswith(SUFFIXES)


def _has_nifti(folder: Path) -> bool:
    return any(p.is_file() and visible(p) and is_nifti_name(p) for p in folder.iterdir())


def predict_batch(predictor: Predictor, root: Path, out_dir: Path, layout: str) -> list[Path]:
    """Segment every subject folder of `root` into `<out_dir>/<subject>_seg.nii.gz`.

    A subject that fails is logged by name and skipped; the others are still written. The
    next subject is read and preprocessed (`read_ahead`) while the network runs on the
    current one.

    Raises:
        BrainsegError: after all subjects, naming those that failed.
    """
    folders = subject_folders(root)
    modalities = model_modalities(predictor.config)

    def read(folder: Path) -> SubjectVolume:
        volume = read_subject(folder_files(folder, layout, modalities))
        return replace(volume, prepared=prepare_volume(predictor.config, volume.image))

    written, failed = [], []
    # the next subject is read and preprocessed while the network runs on this one
    for folder, volume in tqdm(read_ahead(read, folders), total=len(folders), desc="predict",
                               unit="subject"):
        try:
            target = out_dir / f"{folder.name}_seg.nii.gz"
            written.append(predict_subject(predictor, volume(), target))
        except BrainsegError as exc:
            log.error("%s: failed: %s", folder.name, exc)
            failed.append(folder.name)
    log.info("wrote %d of %d predictions to %s", len(written), len(folders), out_dir)
    if failed:
        raise BrainsegError(f"{len(failed)} of {len(folders)} subjects failed (the others are "
                            f"written to {out_dir}): {', '.join(failed)}")
    return written


def _check_file_output(output: Path) -> None:
    if not is_nifti_name(output) or output.is_dir():
        raise BrainsegError(f"--output {output}: expected a file name ending in .nii.gz or .nii "
                            "for one subject")


def run_predict(*, model: str, inputs: list[Path], output: Path, layout: str = "auto",
                threshold: float = 0.5, batch_size: int = 32, device: str = "cpu",
                tracking_uri: str | None = None,
                postprocess: Path | None = None, precision: str = "fp32",
                overlap: float | None = None, threads: int = 0) -> list[Path]:
    """Segment one subject (a folder or its files) or a folder of subject folders.

    Args:
        model: a `train` checkpoint path, an ONNX file from `brainseg export`, or an
            MLflow `models:/` or `runs:/` URI.
        inputs: (`--input`) one subject folder, four files (t1 t1ce t2 flair, or named by
            modality; a model trained on fewer modalities takes its own, e.g. t1 t1ce
            flair), or one folder of subject folders. A subject lacking a modality the
            model needs is refused, naming it; other modalities are ignored.
        output: the output file for one subject; the output folder in batch.
        layout: "auto", "brats2020" or "brats2023": the file names searched and the label
            convention written.
        threshold: probability threshold of every region (WT, TC, ET), when no
            `postprocess` settings are given.
        batch_size: slices per forward pass.
        device: torch device (an ONNX model runs on the CPU).
        tracking_uri: MLflow tracking URI for model URIs.
        postprocess: settings chosen by the `postprocess` stage (reports/postprocess.json):
            per-region thresholds, clean-up, flip TTA, as `evaluate` applies them.
        precision: "fp32", "bf16" (autocast of the forward passes: faster where the
            hardware has bf16, a few voxels may differ) or "auto" (bf16 where native,
            `resolve_precision`); an ONNX model runs in its own precision (fp32 only here).
        overlap: a 3D model's sliding-window overlap in [0, 1) instead of the one its
            checkpoint records (`train.patch_overlap`); None: the recorded one.
        threads: CPU threads of torch and ONNX Runtime, at most the usable cores (0: their
            default); torch is not loaded for a 2D ONNX model.

    Returns:
        The files written.

    Raises:
        BrainsegError: bad input, model or output (nothing written), or failed subjects
            in batch (the others written).
    """
    if layout not in LAYOUT_CHOICES:
        raise BrainsegError(f"--layout: unknown layout '{layout}' ({', '.join(LAYOUT_CHOICES)})")
    batch = len(inputs) == 1 and inputs[0].is_dir() and not _has_nifti(inputs[0])
    subject = None
    if batch:
        if not subject_folders(inputs[0]):
            raise BrainsegError(f"{inputs[0]}: no NIfTI files and no subject folders")
        if is_nifti_name(output):
            raise BrainsegError(f"--output {output}: a folder is expected with a folder of "
                                "subjects as --input")
    else:
        _check_file_output(output)
        try:  # the four modality files, found before the model is loaded
            subject = _single_inputs(inputs, layout)
        except BrainsegError:  # looked for again with the model's modalities, which names a
            subject = None     # missing one (a model of fewer modalities needs no others)
    precision = resolve_precision(precision, device)
    if precision != "fp32" and is_onnx(model):
        raise BrainsegError(f"--precision {precision}: {model} is an ONNX model, run by ONNX "
                            "Runtime in the precision it was exported in (use fp32, or a "
                            "checkpoint)")
    settings = (read_settings(postprocess) if postprocess is not None
                else PostprocessSettings.uniform(threshold))
    net, config = load_model(model, device, tracking_uri, cpu_threads(threads))
    if not isinstance(net, ArrayNetwork):
        set_threads(threads)
    if overlap is not None:
        config = with_overlap(config, overlap, model)
    predictor = Predictor(net, config, settings, batch_size, device, precision)
    if batch:
        return predict_batch(predictor, inputs[0], output, layout)
    need = model_modalities(config)
    if subject is None or tuple(subject.files) != need:
        subject = _single_inputs(inputs, layout, need)
    return [predict_subject(predictor, subject, output)]


def with_overlap(config: dict, overlap: float, model: str) -> dict:
    """`config` with its sliding-window overlap replaced (a copy).

    Raises:
        BrainsegError: the model is 2D (no sliding window), or overlap is outside [0, 1).
    """
    if model_dims(config) != 3:
        raise BrainsegError(f"--overlap: {model} is a 2D model, which has no sliding window")
    if not 0.0 <= overlap < 1.0:
        raise BrainsegError(f"--overlap {overlap}: expected a value in [0, 1)")
    return {**config, "patch": {**config["patch"], "overlap": overlap}}


def _single_inputs(inputs: list[Path], layout: str,
                   modalities: tuple[str, ...] = MODALITIES) -> SubjectFiles:
    """The files of one subject's `modalities` (the model's): a folder, or listed files."""
    if len(inputs) == 1:
        if not inputs[0].exists():
            raise BrainsegError(f"--input {inputs[0]}: not found")
        if not inputs[0].is_dir():
            raise BrainsegError(f"--input {inputs[0]}: expected a subject folder, a folder of "
                                "subject folders, or four files (t1 t1ce t2 flair)")
        return folder_files(inputs[0], layout, modalities)
    return listed_files(inputs, layout, modalities)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True,
        help="a checkpoint written by `brainseg train` (models/model.pt); an ONNX model "
        "written by `brainseg export` (models/model.onnx: run by ONNX Runtime on the CPU with "
        "--threads threads, around the same preprocessing and post-processing; a 2D one "
        "without torch, the fastest start for one patient); or an MLflow "
        "model URI: models:/<name>/<version>, models:/<name>@<alias> or runs:/<run id>/<path> "
        "(looked up at --tracking-uri)")
    parser.add_argument(
        "--input", required=True, nargs="+", type=Path, metavar="PATH", dest="inputs",
        help="one subject folder (BraTS 2020/2021 names *_t1, *_t1ce, *_t2, *_flair or "
        "BraTS 2023 names *-t1n, *-t1c, *-t2w, *-t2f; a label map is not needed); or four "
        "files, in the order t1 t1ce t2 flair unless their names say the modality (a model "
        "trained on fewer modalities takes those, e.g. t1 t1ce flair); or a folder of "
        "subject folders (batch)")
    parser.add_argument(
        "--output", required=True, type=Path,
        help="output .nii.gz for one subject; in batch, a folder that receives "
        "<subject>_seg.nii.gz per subject. Same shape, affine and header as the input")
    parser.add_argument(
        "--layout", default="auto", choices=LAYOUT_CHOICES,
        help="file names to look for and label convention of the output: brats2020 "
        "(labels 0/1/2/4), brats2023 (0/1/2/3); auto: from the input's file names "
        "(brats2020 when they carry none)")
    parser.add_argument("--threshold", type=float, default=0.5,
                        help="probability threshold of every region WT, TC, ET (default 0.5; "
                        "ignored with --postprocess)")
    parser.add_argument("--postprocess", type=Path, default=None, metavar="JSON",
                        help="post-processing settings chosen on the validation split by "
                        "`brainseg postprocess` (reports/postprocess.json): per-region "
                        "thresholds, small-component removal, ET->necrosis, flip TTA")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="axial slices per forward pass (memory, not results; default 32)")
    parser.add_argument(
        "--precision", default="fp32", choices=PRECISIONS,
        help="fp32 (default: the labels `evaluate` writes); bf16: the forward passes under "
        "bf16 autocast, 2-3x faster on a CPU with AMX or AVX-512 BF16 (and on GPUs), "
        "several times slower without, labels identical on all but about 0.01%% of voxels; "
        "auto: bf16 where the device has it in hardware, else fp32. Checkpoints only")
    parser.add_argument("--overlap", type=float, default=None,
                        help="3D models: the sliding-window overlap in [0, 1) (default: the "
                        "one the checkpoint records, train.patch_overlap; 0.25 needs about "
                        "3/4 of the windows of 0.5, 0 a third)")
    add_device_arguments(parser)
    add_tracking_argument(parser)


def main(args: argparse.Namespace) -> None:
    from brainseg.parallel import keep_freed_memory
    from brainseg.tracking import tracking_uri

    # One command, then exit: the large activations of every slice batch or 3D window are
    # reused instead of unmapped and faulted in again (a quarter of a 3D prediction's time).
    keep_freed_memory()
    if not 0.0 < args.threshold < 1.0:
        raise BrainsegError(f"--threshold {args.threshold}: expected a value in (0, 1)")
    if args.batch_size < 1:
        raise BrainsegError(f"--batch-size {args.batch_size}: expected a positive integer")
    uri = tracking_uri(args.tracking_uri) if args.model.startswith(MLFLOW_SCHEMES) else None
    written = run_predict(model=args.model, inputs=args.inputs, output=args.output,
                          layout=args.layout, threshold=args.threshold,
                          batch_size=args.batch_size, tracking_uri=uri,
                          device="cpu" if is_onnx(args.model) else resolve_device(args.device),
                          postprocess=args.postprocess, precision=args.precision,
                          overlap=args.overlap, threads=args.threads)
    log.info("wrote %s", written[0] if len(written) == 1 else f"{len(written)} files")
