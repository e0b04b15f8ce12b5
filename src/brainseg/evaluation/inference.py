"""Apply a trained model to a volume: training preprocessing, batched slices (2D) or a sliding
window over the stacked slices (3D), back to the grid.

torch is imported by the functions that need it: a 2D ONNX model (`load_onnx`) predicts
without it.
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from brainseg.data.labels import REGIONS, check_regions
from brainseg.data.modalities import MODALITIES
from brainseg.data.preprocess import (
    SliceGeometry,
    extract_slices,
    normalize_slices,
    stack_context,
    stack_volume,
    to_original_grid,
)
from brainseg.errors import BrainsegError
from brainseg.evaluation.labelmaps import PostprocessSettings, apply
from brainseg.models.logits import Network, predict_slices, predict_slices_with_tta

if TYPE_CHECKING:
    import torch


def _first_line(exc: BaseException) -> str:
    """The first line of an exception's message (torch's can run to hundreds of lines)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load_checkpoint(path: str | Path, device: str = "cpu"
                    ) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Rebuild the model from a checkpoint written by `train` (loaded with weights_only=True).

    The model is a U-Net, or the `Ensemble` of the fold models of a cross-validation.

    Returns:
        The model in eval mode on `device`, its BatchNorms folded into the convolutions
        (`fold_batchnorm`: same outputs to float rounding), and the checkpoint's config.

    Raises:
        BrainsegError: the file is missing, unreadable, not a brainseg checkpoint, or its
            weights do not fit the architecture its config describes.
    """
    import torch

    from brainseg.models.fusion import fold_batchnorm

    path = Path(path)
    if not path.is_file():
        raise BrainsegError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if unsafe:  # a class or function in the pickle: unpickling it could run code
            raise BrainsegError(f"{path}: the checkpoint holds a pickled {unsafe[1]}, not only "
                                "weights and plain values: not loaded (loading it could run "
                                "code)") from exc
        raise BrainsegError(f"{path}: cannot load checkpoint (corrupt or not a torch file?): "
                            f"{_first_line(exc)}") from exc
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise BrainsegError(f"{path}: cannot load checkpoint (corrupt or not a torch file?): "
                            f"{_first_line(exc)}") from exc
    if not (isinstance(ckpt, dict) and {"state_dict", "config"} <= set(ckpt)):
        raise BrainsegError(f"{path}: not a brainseg checkpoint (expected the keys state_dict "
                            "and config that `brainseg train` writes)")
    check_config(ckpt["config"], str(path))
    model = _build(ckpt["config"], str(path))
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise BrainsegError(f"{path}: weights do not match the architecture of its config "
                            f"{ckpt['config']['model']}: {_first_line(exc)}") from exc
    model.to(device=device, memory_format=memory_format(ckpt["config"])).eval()
    return fold_batchnorm(model), ckpt["config"]


def memory_format(config: dict[str, Any]) -> torch.memory_format:
    """Channels-last memory of the model's dimension (NHWC in 2D, NDHWC in 3D)."""
    import torch

    return torch.channels_last_3d if model_dims(config) == 3 else torch.channels_last


CONFIG_KEYS: dict[str, tuple[str, ...]] = {
    "model": ("base_channels", "depth", "norm", "dropout", "output"),
    "extract": ("image_size", "margin", "min_brain_pixels"),
    "normalize": ("clip_percentiles",),
}


def check_config(config: Any, source: str) -> None:
    """Refuse a model config lacking what prediction needs (see `CONFIG_KEYS`), or whose
    `in_channels` are not its modalities times 2n + 1 (`input_channels`)."""
    if not isinstance(config, dict):
        raise BrainsegError(f"{source}: model config is not a mapping")
    for section, keys in CONFIG_KEYS.items():
        got = config.get(section)
        missing = [k for k in keys if not isinstance(got, dict) or k not in got]
        if missing:
            raise BrainsegError(f"{source}: model config lacks {section}.{missing[0]}")
    have = config["model"].get("in_channels")
    try:
        model_dims(config)
        want = input_channels(config)
    except BrainsegError as exc:
        raise BrainsegError(f"{source}: {exc}") from exc
    if have is not None and have != want:
        raise BrainsegError(f"{source}: model.in_channels {have} is not the input of its "
                            f"{len(model_modalities(config))} modalities with context_slices "
                            f"{model_context(config)} ({want} channels)")


def _build(config: dict[str, Any], source: str) -> torch.nn.Module:
    from brainseg.models.ensemble import build_network

    try:
        return build_network(config)
    except (ValueError, TypeError, BrainsegError) as exc:
        raise BrainsegError(f"{source}: cannot build the model of its config: {exc}") from exc


MLFLOW_SCHEMES: tuple[str, ...] = ("models:/", "runs:/")
CONFIG_ATTRIBUTE = "brainseg_config"  # module attribute or MLmodel metadata key of the config


def _mlflow_config(model: torch.nn.Module, ref: str) -> Any:
    """The config carried by a logged model: its attribute, else its MLmodel metadata."""
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    if config is None:
        import mlflow

        metadata = mlflow.models.get_model_info(ref).metadata or {}
        config = metadata.get(CONFIG_ATTRIBUTE)
    return config


def is_onnx(ref: str | Path) -> bool:
    """Whether a `--model` value names an ONNX file (`brainseg export`), by its suffix."""
    return str(ref).lower().endswith(".onnx")


def load_onnx(path: str | Path, threads: int | None = None) -> tuple[Network, dict[str, Any]]:
    """The network of an ONNX file written by `brainseg export`, run by ONNX Runtime on the
    CPU, and the config in its metadata.

    A 2D model is an `OnnxSession` (an `ArrayNetwork`: no torch); a 3D one, whose sliding
    window runs in torch, that session as a torch module (`OnnxNetwork`).

    Args:
        path: the `.onnx` file.
        threads: ONNX Runtime's threads (0: its default); None: as many as torch
            (`--threads`, `brainseg.runtime.set_threads`).

    Raises:
        BrainsegError: the file is missing, not an ONNX model, or carries no brainseg config.
    """
    from brainseg.evaluation.onnx_runtime import open_session

    if threads is None:
        import torch

        threads = torch.get_num_threads()
    session = open_session(path, threads)
    metadata = session.metadata
    try:
        config = json.loads(metadata[CONFIG_ATTRIBUTE])
    except (KeyError, json.JSONDecodeError) as exc:
        raise BrainsegError(f"{path}: not a brainseg ONNX model (no JSON config "
                            f"'{CONFIG_ATTRIBUTE}' in its metadata; write it with "
                            "`brainseg export`)") from exc
    check_config(config, str(path))
    if model_dims(config) == 2:
        return session, config
    from brainseg.evaluation.onnx_graph import OnnxNetwork

    return OnnxNetwork(session), config


def load_model(ref: str, device: str = "cpu", tracking_uri: str | None = None,
               threads: int | None = None) -> tuple[Network, dict[str, Any]]:
    """Load a model from a `train` checkpoint, an ONNX file or an MLflow model URI.

    Args:
        ref: a checkpoint path; an ONNX file (`.onnx`, written by `brainseg export`: run by
            ONNX Runtime on the CPU whatever `device`, see `load_onnx`); or
            `models:/<name>/<version>` (also `models:/<name>@<alias>`) or
            `runs:/<run id>/<artifact path>`: a model logged with `mlflow.pytorch.log_model`
            that carries its config (the checkpoint's "config") either in the MLmodel
            metadata (`metadata={"brainseg_config": config}`, works with the default `pt2`
            format) or as the module attribute `brainseg_config` (`pickle` format).
        device: torch device to load on.
        tracking_uri: the MLflow tracking (and registry) URI for model URIs; None keeps
            MLflow's own default.
        threads: an ONNX model's threads (see `load_onnx`).

    Returns:
        The model in eval mode on `device`, and its config (as in a checkpoint).

    Raises:
        BrainsegError: the model cannot be found or loaded, or carries no config.
    """
    if is_onnx(ref):
        return load_onnx(ref, threads)
    if not ref.startswith(MLFLOW_SCHEMES):
        return load_checkpoint(ref, device)
    import mlflow
    import mlflow.pytorch
    import torch
    from mlflow.exceptions import MlflowException

    from brainseg.models.fusion import fold_or_freeze

    if tracking_uri is not None:
        mlflow.set_tracking_uri(tracking_uri)
    try:
        model = mlflow.pytorch.load_model(ref, map_location=device)
        config = _mlflow_config(model, ref)
    except (MlflowException, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise BrainsegError(f"{ref}: cannot load MLflow model: {_first_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module) or config is None:
        raise BrainsegError(f"{ref}: not a brainseg model (a torch module logged with its config "
                            f"as MLmodel metadata or attribute '{CONFIG_ATTRIBUTE}')")
    check_config(config, ref)
    model = fold_or_freeze(model)
    model.to(device=device, memory_format=memory_format(config))
    return model, config


def prepare_volume(config: dict[str, Any], image: np.ndarray | Sequence[np.ndarray]
                   ) -> tuple[np.ndarray, SliceGeometry]:
    """The model's input (s, m * (2n + 1), h, w) for a volume (m, x, y, z), and its geometry.

    Exactly the preprocessing of the training data (`extract_slices`, `normalize_slices`,
    with the params stored in the checkpoint), and its 2.5D stacking of n =
    `model_context(config)` neighbouring slices each side (`stack_context`; n = 0: the
    normalized slices (s, m, h, w) themselves).
    """
    ext, norm = config["extract"], config["normalize"]
    slices, _, brain, geo = extract_slices(
        image, None, ext["image_size"], ext["margin"], ext["min_brain_pixels"]
    )
    normed, _ = normalize_slices(slices, brain, tuple(norm["clip_percentiles"]))
    return stack_context(normed, model_context(config), geo.z), geo


def model_context(config: dict[str, Any]) -> int:
    """The 2.5D context n of a checkpoint config (`train.model.context_slices`): the model
    takes n slices each side of its target; a config written without it: 0.

    Raises:
        BrainsegError: the value is not an integer >= 0.
    """
    n = config["model"].get("context_slices", 0)
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise BrainsegError(f"model config: context_slices should be an integer >= 0, got {n!r}")
    return n


def model_dims(config: dict[str, Any]) -> int:
    """The spatial dimension of a checkpoint config's network (`train.model.dims`): 2 (slices)
    or 3 (the stacked slices as one volume); a config written without it: 2.

    Raises:
        BrainsegError: not 2 or 3, or a 3D config without its sliding window (`patch`).
    """
    dims = config["model"].get("dims", 2)
    if dims not in (2, 3):
        raise BrainsegError(f"model config: dims should be 2 or 3, got {dims!r}")
    if dims == 3 and not (isinstance(config.get("patch"), dict)
                          and {"size", "overlap"} <= set(config["patch"])):
        raise BrainsegError("model config: a 3D model needs patch.size and patch.overlap (its "
                            "sliding window), which `brainseg train` records")
    return dims


def predict_normalized(model: Network, config: dict[str, Any], normed: np.ndarray,
                       batch_size: int, device: str = "cpu", flip_tta: bool = False
                       ) -> np.ndarray:
    """Region probabilities float32 (s, 3, h, w) of the model's input slices (`prepare_volume`).

    2D: `predict_slices`, `batch_size` slices at a time, `flip_tta` the left-right mirror.
    3D: the slices stacked into one volume (`stack_volume`), a Gaussian-weighted sliding
    window of the checkpoint's patch size and overlap, `flip_tta` the 8 mirrors.
    """
    if model_dims(config) == 2:
        return predict_slices(model, normed, batch_size, device, output_mode(config), flip_tta)
    from brainseg.evaluation.sliding_window import predict_volume_probabilities

    size, overlap = config["patch"]["size"], config["patch"]["overlap"]
    probs = predict_volume_probabilities(model, stack_volume(normed), size, overlap,
                                         output_mode(config), device, flip_tta)
    return probs.transpose(1, 0, 2, 3)


def predict_normalized_tta(model: Network, config: dict[str, Any], normed: np.ndarray,
                           batch_size: int, device: str = "cpu"
                           ) -> tuple[np.ndarray, np.ndarray]:
    """(plain, flip TTA) probabilities float32 (s, 3, h, w), as `predict_normalized` gives
    them with flip_tta False and True, from one set of forward passes."""
    if model_dims(config) == 2:
        return predict_slices_with_tta(model, normed, batch_size, device, output_mode(config))
    from brainseg.evaluation.sliding_window import predict_volume_tta

    size, overlap = config["patch"]["size"], config["patch"]["overlap"]
    plain, tta = predict_volume_tta(model, stack_volume(normed), size, overlap,
                                    output_mode(config), device)
    return plain.transpose(1, 0, 2, 3), tta.transpose(1, 0, 2, 3)


def input_channels(config: dict[str, Any]) -> int:
    """The channels of the model's input: its modalities times 2n + 1 (`model_context`)."""
    return len(model_modalities(config)) * (2 * model_context(config) + 1)


def model_modalities(config: dict[str, Any]) -> tuple[str, ...]:
    """The input channels of a checkpoint config, in order (one that names none: all four)."""
    return tuple(config.get("modalities", MODALITIES))


def model_regions(config: dict[str, Any]) -> tuple[str, ...]:
    """The regions a checkpoint's model was trained on (one that names none: all three)."""
    return check_regions(config.get("regions", REGIONS), "model config")


def model_inputs(config: dict[str, Any], image: np.ndarray | Sequence[np.ndarray],
                 modalities: Sequence[str], source: str | Path) -> list[np.ndarray]:
    """The volumes of `image` (its channels are `modalities`) that the model takes, in its order.

    Args:
        config: the checkpoint config (its "modalities").
        image: (m, x, y, z) array or m (x, y, z) volumes.
        modalities: the modality of each channel of `image`.
        source: the subject, named in the error.

    Raises:
        BrainsegError: a modality the model needs is missing.
    """
    need, have = model_modalities(config), list(modalities)
    missing = [m for m in need if m not in have]
    if missing:
        raise BrainsegError(f"{source}: the model needs the modalities {' '.join(need)}; "
                            f"missing {' '.join(missing)} (the subject has {' '.join(have)})")
    return [image[have.index(m)] for m in need]


def scored_regions(config: dict[str, Any], annotated: Sequence[str]) -> tuple[str, ...]:
    """The regions that a reference annotating `annotated` can score the model on."""
    trained = model_regions(config)
    return tuple(r for r in REGIONS if r in trained and r in annotated)


def trained_only(probs: np.ndarray, config: dict[str, Any]) -> np.ndarray:
    """Region probabilities (3, ...) with those of regions the model was not trained on
    set to 0 (in place): a whole-tumour-only model predicts WT alone (label 2)."""
    trained = model_regions(config)
    for i, region in enumerate(REGIONS):
        if region not in trained:
            probs[i] = 0
    return probs


def output_mode(config: dict[str, Any]) -> str:
    """The network's output mode stored in a checkpoint config (`regions` or `softmax`)."""
    return config["model"]["output"]


def predict_probabilities(
    model: Network,
    config: dict[str, Any],
    image: np.ndarray | Sequence[np.ndarray],
    batch_size: int,
    device: str = "cpu",
    flip_tta: bool = False,
) -> np.ndarray:
    """Region probabilities float32 (3, x, y, z) of WT, TC, ET for a volume (m, x, y, z)
    of the model's m modalities (`model_inputs`).

    On the volume's own grid; 0 outside the brain's crop box, on slices not kept, and for
    the regions the model was not trained on (`trained_only`). A 2D or 3D model alike
    (`predict_normalized`); `batch_size` is the slices per forward pass of a 2D one.
    """
    normed, geo = prepare_volume(config, image)
    return predict_prepared(model, config, normed, geo, batch_size, device, flip_tta)


def predict_prepared(model: Network, config: dict[str, Any], normed: np.ndarray,
                     geo: SliceGeometry, batch_size: int, device: str = "cpu",
                     flip_tta: bool = False) -> np.ndarray:
    """`predict_probabilities` of a volume already prepared (`prepare_volume`: its model
    input `normed` and geometry `geo`), so that a batch can prepare the next subject while
    the network runs on this one."""
    probs = predict_normalized(model, config, normed, batch_size, device, flip_tta)
    return trained_only(to_original_grid(probs, geo), config)


def predict_volume(
    model: Network,
    config: dict[str, Any],
    image: np.ndarray | Sequence[np.ndarray],
    threshold: float,
    batch_size: int,
    device: str = "cpu",
) -> np.ndarray:
    """Segment one volume (m, x, y, z) into BraTS labels uint8 (x, y, z) on the same grid.

    One `threshold` for every region, ET ⊂ TC ⊂ WT, no other post-processing (see
    `brainseg.evaluation.labelmaps` for the tuned settings).
    """
    probs = predict_probabilities(model, config, image, batch_size, device)
    # no volume-based option is on, so the voxel spacing plays no part
    return apply(probs, PostprocessSettings.uniform(threshold), spacing=(1.0, 1.0, 1.0))
