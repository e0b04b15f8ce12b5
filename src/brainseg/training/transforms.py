"""Intensity augmentations for z-scored MRI slices, as albumentations transforms.

albumentations' own RandomGamma, RandomBrightnessContrast, GaussNoise and GaussianBlur
clip float32 images to [0, 1] (RandomGamma even returns NaN for negative values), which
destroys z-scored intensities. These transforms work on float32 (h, w, c) images in
z-score units and never clip. They follow nnU-Net's intensity augmentations, except
that they change the brain only (pixels non-zero in any channel): the background stays
exactly 0, as it is in every image the network sees at inference (blur is computed on
the whole slice, then the background is reset to 0).

Every random draw comes from albumentations' own generators (`self.random_generator`,
`self.py_random` for the apply-or-not decision), so that `Compose.set_random_state`
or `set_random_seed` reproduce them. The drawn values are the transform's params and
appear in `applied_transforms` when the Compose has `save_applied_params=True`.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from albumentations.core.transforms_interface import ImageOnlyTransform

EPS = 1e-7


def brain_of(img: np.ndarray) -> np.ndarray:
    """Bool (h, w): pixels non-zero in any channel of a float (h, w, c) image."""
    return np.any(img != 0, axis=-1)


def _channels(params: dict[str, Any]) -> int:
    shape = params["shape"]
    return shape[2] if len(shape) == 3 else 1


def _draws(params: dict[str, Any], context: int) -> int:
    """Values to draw: one per modality (the image's channels are `context` slices of each)."""
    return max(_channels(params) // context, 1)


def _per_channel(values: np.ndarray | list[float], context: int) -> list[float]:
    """Per-modality values repeated for each of its `context` slices (modality-major)."""
    return np.repeat(np.asarray(values, dtype=float), context).tolist()


def draw_gamma(rng: np.random.Generator, low: float, high: float) -> float:
    """A gamma in [low, high]: below 1 or above 1 with equal chance (uniform on [low, 1] or
    [1, high]) when the range spans 1, else uniform on it."""
    if low < 1 < high and rng.random() < 0.5:
        return float(rng.uniform(low, 1.0))
    return float(rng.uniform(max(low, 1.0) if high > 1 else low, high))


def _as_hwc(img: np.ndarray) -> np.ndarray:
    return img[..., None] if img.ndim == 2 else img


class BrainGamma(ImageOnlyTransform):
    """Gamma per channel on the brain's intensities rescaled to [0, 1], then mapped back.

    As nnU-Net's gamma augmentation (with `retain_stats`): per channel, x is rescaled
    from [min, max] of the brain to [0, 1], raised to gamma, mapped back to [min, max],
    then shifted and scaled so that the brain's mean and standard deviation are those
    of the input. Gamma is drawn per channel: below 1 or above 1 with equal chance
    (uniform on [low, 1] or [1, high]) when the range spans 1.

    Args:
        gamma_range: (low, high), positive.
        p: probability of applying the transform.
        context: the image's channels are `context` consecutive slices of each modality
            (2.5D input, modality-major): one value is drawn per modality, for all its slices.
    """

    def __init__(self, gamma_range: tuple[float, float] = (0.7, 1.5), p: float = 0.5,
                 context: int = 1):
        super().__init__(p=p)
        self.gamma_range = (float(gamma_range[0]), float(gamma_range[1]))
        self.context = int(context)

    def _draw(self) -> float:
        return draw_gamma(self.random_generator, *self.gamma_range)

    def get_params_dependent_on_data(self, params: dict[str, Any],
                                     data: dict[str, Any]) -> dict[str, Any]:
        gamma = [self._draw() for _ in range(_draws(params, self.context))]
        return {"gamma": gamma if self.context == 1 else _per_channel(gamma, self.context)}

    def apply(self, img: np.ndarray, gamma: list[float], **params: Any) -> np.ndarray:
        out = _as_hwc(img).copy()
        brain = brain_of(out)
        if brain.sum() < 2:
            return out.reshape(img.shape)
        for c, g in enumerate(gamma):
            x = out[..., c][brain]
            mean, std = x.mean(), x.std()
            low, span = x.min(), x.max() - x.min() + EPS
            y = np.power((x - low) / span, g) * span + low
            y = (y - y.mean()) / (y.std() + EPS) * std + mean
            out[..., c][brain] = y
        return out.reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("gamma_range",)


class BrainBrightnessContrast(ImageOnlyTransform):
    """Per channel, on the brain: x * contrast + brightness (z-score units).

    Args:
        brightness: the additive shift is uniform on [-brightness, brightness].
        contrast: the factor is uniform on [1 - contrast, 1 + contrast] (a multiplicative
            change around the z-score origin, the brain's mean).
        p: probability of applying the transform.
        context: the image's channels are `context` consecutive slices of each modality
            (2.5D input, modality-major): one value is drawn per modality, for all its slices.
    """

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1, p: float = 0.5,
                 context: int = 1):
        super().__init__(p=p)
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.context = int(context)

    def get_params_dependent_on_data(self, params: dict[str, Any],
                                     data: dict[str, Any]) -> dict[str, Any]:
        n, context = _draws(params, self.context), self.context
        rng = self.random_generator
        brightness = rng.uniform(-self.brightness, self.brightness, n)
        contrast = rng.uniform(1 - self.contrast, 1 + self.contrast, n)
        return {"brightness": _per_channel(brightness, context),
                "contrast": _per_channel(contrast, context)}

    def apply(self, img: np.ndarray, brightness: list[float], contrast: list[float],
              **params: Any) -> np.ndarray:
        out = _as_hwc(img)
        scaled = out * np.asarray(contrast, np.float32) + np.asarray(brightness, np.float32)
        return np.where(brain_of(out)[..., None], scaled, out).reshape(img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("brightness", "contrast")


class BrainGaussianNoise(ImageOnlyTransform):
    """Additive Gaussian noise on the brain, one standard deviation per sample.

    Args:
        std_range: (low, high) of the noise standard deviation, in z-score units.
        p: probability of applying the transform.
    """

    def __init__(self, std_range: tuple[float, float] = (0.0, 0.1), p: float = 0.5):
        super().__init__(p=p)
        self.std_range = (float(std_range[0]), float(std_range[1]))

    def get_params_dependent_on_data(self, params: dict[str, Any],
                                     data: dict[str, Any]) -> dict[str, Any]:
        std = float(self.random_generator.uniform(*self.std_range))
        noise = self.random_generator.standard_normal(params["shape"], dtype=np.float32)
        return {"std": std, "noise": noise * np.float32(std)}

    def apply(self, img: np.ndarray, noise: np.ndarray, **params: Any) -> np.ndarray:
        brain = brain_of(_as_hwc(img)).reshape(img.shape[:2] + (1,) * (img.ndim - 2))
        return img + noise * brain

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("std_range",)


class FloatGaussianBlur(ImageOnlyTransform):
    """Gaussian blur with one sigma per channel (pixels), without clipping; the background
    (pixels zero in every channel) stays 0.

    Args:
        sigma_range: (low, high) of the blur's standard deviation in pixels.
        p: probability of applying the transform.
        context: the image's channels are `context` consecutive slices of each modality
            (2.5D input, modality-major): one value is drawn per modality, for all its slices.
    """

    def __init__(self, sigma_range: tuple[float, float] = (0.5, 1.0), p: float = 0.5,
                 context: int = 1):
        super().__init__(p=p)
        self.sigma_range = (float(sigma_range[0]), float(sigma_range[1]))
        self.context = int(context)

    def get_params_dependent_on_data(self, params: dict[str, Any],
                                     data: dict[str, Any]) -> dict[str, Any]:
        sigma = self.random_generator.uniform(*self.sigma_range, _draws(params, self.context))
        return {"sigma": _per_channel(sigma, self.context)}

    def apply(self, img: np.ndarray, sigma: list[float], **params: Any) -> np.ndarray:
        out = _as_hwc(img)
        blurred = np.stack([cv2.GaussianBlur(np.ascontiguousarray(out[..., c]), (0, 0), s,
                                             borderType=cv2.BORDER_REFLECT_101)
                            for c, s in enumerate(sigma)], axis=-1)
        return np.where(brain_of(out)[..., None], blurred, 0).astype(np.float32).reshape(
            img.shape)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma_range",)
