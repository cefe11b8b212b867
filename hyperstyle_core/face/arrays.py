"""Photos as arrays: any image-like input -> RGB uint8 or float, with checks that name the image."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..io.images import MIN_IMAGE_SIDE

MIN_IMAGE_SIZE = MIN_IMAGE_SIDE     # release-0.1 name, still reached as hyperstyle_core.alignment.MIN_IMAGE_SIZE


def as_rgb_uint8(image: Any, name: str = "image 1") -> np.ndarray:
    """Any single image array -> [H, W, 3] uint8 RGB (a new array; the input is never modified).

    Accepts numpy arrays or torch tensors shaped [H, W] or [H, W, 1] (grayscale, repeated to RGB),
    [H, W, 2] (grayscale + alpha), [H, W, 3] (RGB) or [H, W, 4] (RGBA). Alpha is composited over white, as
    `images.open_rgb` does for files. dtype uint8 (0..255) or float (0..1, rounded to uint8).

    Raises:
        ValueError: for anything else (batches, other dtypes, floats outside [0, 1], NaN), saying what to pass.
    """
    arr = to_numpy(image, name)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        hint = " (a batch: pass one image at a time)" if arr.ndim == 4 else ""
        raise ValueError(f"{name} has shape {list(arr.shape)}{hint}; expected [H, W], [H, W, 1], [H, W, 3] "
                         f"or [H, W, 4]")
    if arr.dtype == np.uint8 and arr.shape[2] in (1, 3):     # exact: no float round trip
        return np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else np.array(arr, copy=True, order="C")
    rgb = to_unit_float(arr, name)
    if rgb.shape[2] in (2, 4):
        alpha = rgb[:, :, -1:]
        rgb = rgb[:, :, :-1] * alpha + (1.0 - alpha)     # over white
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return np.rint(rgb * 255.0).astype(np.uint8)


def to_numpy(image: Any, name: str) -> np.ndarray:
    """ndarray or tensor -> ndarray (no copy when possible); anything else raises ValueError."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu()
        return (image.float() if image.dtype in (torch.bfloat16, torch.float16) else image).numpy()
    if isinstance(image, np.ndarray):
        return image
    raise ValueError(f"{name} is a {type(image).__name__}; expected a numpy array [H, W, 3] "
                     "(for a PIL image use np.asarray(img.convert('RGB')))")


def to_unit_float(arr: np.ndarray, name: str) -> np.ndarray:
    """uint8 or float image -> float64 in [0, 1]; other dtypes and out-of-range floats raise ValueError."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} has dtype {arr.dtype}; expected uint8 (0..255) or float (0..1). "
                         "Convert with .astype(np.uint8) if the values are 0..255")
    out = arr.astype(np.float64)
    if out.size and not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
    if lo < -0.01 or hi > 1.01:     # small overshoot is common after resampling; more means the wrong scale
        raise ValueError(f"{name} is float with values in [{lo:.3g}, {hi:.3g}]; float images must be in [0, 1] "
                         "(divide 0..255 values by 255, or pass uint8)")
    return np.clip(out, 0.0, 1.0)


def check_min_size(rgb: np.ndarray, name: str) -> None:
    """Raise ValueError if the image is too small for the face detector."""
    h, w = rgb.shape[:2]
    if h < MIN_IMAGE_SIDE or w < MIN_IMAGE_SIDE:
        raise ValueError(f"{name} is {w}x{h} pixels; faces need at least {MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} pixels "
                         "to be detected. Use a larger photo.")


def check_positive_int(name: str, value: Any) -> int:
    """Validate a size argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def as_float_rgb(image: Any, name: str) -> np.ndarray:
    """Image -> [H, W, 3] float32 in [0, 1]; uint8 divided by 255, float kept (clipped) rather than rounded."""
    arr = to_numpy(image, name)
    if arr.ndim == 3 and arr.shape[2] == 3:
        return to_unit_float(arr, name).astype(np.float32)
    return as_rgb_uint8(arr, name).astype(np.float32) / 255.0
