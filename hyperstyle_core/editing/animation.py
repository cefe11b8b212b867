"""Animations between two inverted images: linear interpolation of latents and weight deltas, GIF/WebP/PNG writing.

A frame t in [0, 1] renders `(1 - t) * latent_a + t * latent_b` with deltas `(1 - t) * deltas_a + t * deltas_b`
(a layer missing on one side counts as zero, like `WeightDeltas` addition). Render each frame with
`generate(generator, latents[i:i+1], deltas.index(i))`, or build frames one at a time with `lerp_deltas` when the
deltas of every frame at once would not fit in memory (about 150 MB per frame for a 1024px model).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..deltas import WeightDeltas
from ..io.files import atomic_path
from ..io.images import to_unit_range

ANIMATION_FORMATS = {".gif": "GIF", ".webp": "WEBP"}


# ----------------------------------------------------------------------------------------------- interpolation

def frame_weights(n_frames: int) -> torch.Tensor:
    """[n_frames] float64 weights t_i = i / (n_frames - 1), from exactly 0 to exactly 1."""
    if not isinstance(n_frames, int) or n_frames < 2:
        raise ValueError(f"an interpolation needs n_frames >= 2 (both endpoints), got {n_frames}")
    return torch.arange(n_frames, dtype=torch.float64) / (n_frames - 1)


def _single_latent(latent: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(latent, torch.Tensor) or latent.ndim not in (2, 3) or latent.shape[0] != 1:
        shape = list(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"{name} must be one code, W [1, D] or W+ [1, n_latent, D], got {shape}; pick one sample "
                         f"with latent[i:i+1]")
    return latent


def _single_deltas(deltas: WeightDeltas | None, name: str) -> WeightDeltas | None:
    if deltas is None:
        return None
    if not isinstance(deltas, WeightDeltas):
        raise ValueError(f"{name} must be WeightDeltas or None, got {type(deltas).__name__}")
    if len(deltas) and deltas.batch_size != 1:
        raise ValueError(f"{name} hold {deltas.batch_size} samples; pick the one to animate with deltas.index(i)")
    return deltas


def _check_pair(deltas_a: WeightDeltas | None, deltas_b: WeightDeltas | None) -> None:
    if deltas_a is not None and deltas_b is not None:
        problem = deltas_a.signature.mismatch(deltas_b.signature)
        if problem:
            raise ValueError(f"cannot interpolate deltas of different generators: {problem}. Use deltas from the "
                             f"same HyperStyle model for both ends.")


def _lerp_layers(deltas_a: WeightDeltas | None, deltas_b: WeightDeltas | None, t: torch.Tensor) -> WeightDeltas:
    """Per-layer (1 - t) * a + t * b for a [T] weight vector, endpoints copied exactly."""
    signature = (deltas_a if deltas_a is not None else deltas_b).signature
    a_map = dict(deltas_a) if deltas_a is not None else {}
    b_map = dict(deltas_b) if deltas_b is not None else {}
    out = {}
    for layer in [n for n, *_ in signature.layers if n in a_map or n in b_map]:
        ref = a_map.get(layer, b_map.get(layer))
        a = a_map.get(layer, torch.zeros_like(ref))
        b = b_map.get(layer, torch.zeros_like(ref)).to(device=a.device, dtype=a.dtype)
        w = t.to(device=a.device, dtype=a.dtype).view(-1, 1, 1, 1, 1)
        frames = (1 - w) * a + w * b
        frames[(t == 0).to(a.device)] = a[0]
        frames[(t == 1).to(a.device)] = b[0]
        out[layer] = frames
    return WeightDeltas(out, signature)


def lerp_deltas(deltas_a: WeightDeltas | None, deltas_b: WeightDeltas | None, t: float) -> WeightDeltas | None:
    """One frame's deltas: (1 - t) * deltas_a + t * deltas_b (batch 1); None when both are None.

    Args:
        deltas_a, deltas_b: WeightDeltas of batch 1 made for the same generator, or None (= no offsets).
        t: interpolation weight, 0 gives deltas_a and 1 gives deltas_b exactly.
    """
    deltas_a, deltas_b = _single_deltas(deltas_a, "deltas_a"), _single_deltas(deltas_b, "deltas_b")
    _check_pair(deltas_a, deltas_b)
    if deltas_a is None and deltas_b is None:
        return None
    return _lerp_layers(deltas_a, deltas_b, torch.tensor([float(t)], dtype=torch.float64))


def interpolate(latent_a: torch.Tensor, latent_b: torch.Tensor, deltas_a: WeightDeltas | None = None,
                deltas_b: WeightDeltas | None = None, n_frames: int = 30
                ) -> tuple[torch.Tensor, WeightDeltas | None]:
    """Linear interpolation from (latent_a, deltas_a) to (latent_b, deltas_b), both endpoints included exactly.

    Args:
        latent_a, latent_b: one code each, W [1, D] or W+ [1, n_latent, D]; a W code is repeated to match a W+ one.
        deltas_a, deltas_b: WeightDeltas of batch 1 for the same generator, or None (= no offsets; a missing layer
            counts as zero). Their device is kept.
        n_frames: number of frames T >= 2; frame i uses t = i / (T - 1).
    Returns:
        latents [T, D] or [T, n_latent, D], and WeightDeltas of batch T (None when both deltas are None). The deltas
        of all frames are held at once: T times the size of one sample's deltas.
    """
    t = frame_weights(n_frames)
    a, b = _single_latent(latent_a, "latent_a"), _single_latent(latent_b, "latent_b")
    if a.ndim != b.ndim:
        n = (a if a.ndim == 3 else b).shape[1]
        a = a.unsqueeze(1).expand(1, n, a.shape[-1]) if a.ndim == 2 else a
        b = b.unsqueeze(1).expand(1, n, b.shape[-1]) if b.ndim == 2 else b
    if a.shape != b.shape:
        raise ValueError(f"latent_a {list(latent_a.shape)} and latent_b {list(latent_b.shape)} do not match; "
                         f"interpolate codes from the same model")
    b = b.to(device=a.device, dtype=a.dtype)
    w = t.to(device=a.device, dtype=a.dtype).view(-1, *([1] * (a.ndim - 1)))
    latents = (1 - w) * a + w * b
    latents[0], latents[-1] = a[0], b[0]
    deltas_a, deltas_b = _single_deltas(deltas_a, "deltas_a"), _single_deltas(deltas_b, "deltas_b")
    _check_pair(deltas_a, deltas_b)
    deltas = None if deltas_a is None and deltas_b is None else _lerp_layers(deltas_a, deltas_b, t)
    return latents, deltas


# ----------------------------------------------------------------------------------------------- writing

def images_to_frames(images: torch.Tensor) -> torch.Tensor:
    """Generator output [T, 3, H, W] in [-1, 1] -> frames [T, H, W, 3] in [0, 1] (clamped), on the CPU."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images_to_frames takes generator images [T, 3, H, W], got {shape}")
    return to_unit_range(images).permute(0, 2, 3, 1).contiguous()


def to_pil_frames(frames: torch.Tensor | Sequence[Image.Image]) -> list[Image.Image]:
    """[T, H, W, 3] float in [0, 1] (ComfyUI IMAGE layout) or a list of PIL images -> RGB PIL images of one size."""
    if isinstance(frames, torch.Tensor):
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
            hint = (" That looks like generator output [T, 3, H, W]; convert it with images_to_frames."
                    if frames.ndim == 4 and frames.shape[1] == 3 else "")
            raise ValueError(f"frames must be a tensor [T, H, W, 3] with values in [0, 1] (T >= 1), got "
                             f"{list(frames.shape)}.{hint}")
        arr = torch.nan_to_num(frames.detach().float().cpu(), nan=0.0).clamp(0, 1).mul(255).round()
        arr = arr.to(torch.uint8).numpy()
        return [Image.fromarray(np.ascontiguousarray(a)) for a in arr]
    images = list(frames)
    if not images:
        raise ValueError("no frames to write: pass at least one image")
    for i, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise ValueError(f"frame {i} is a {type(img).__name__}; pass PIL images or one tensor [T, H, W, 3]")
    images = [img.convert("RGB") for img in images]
    sizes = {img.size for img in images}
    if len(sizes) > 1:
        raise ValueError(f"frames differ in size ({sorted(sizes)}); resize them to one size before writing")
    return images


def save_animation(frames: torch.Tensor | Sequence[Image.Image], path: str | os.PathLike, fps: float = 15.0,
                   loop: bool = True, quality: int = 90) -> Path:
    """Write an animated GIF or WebP (chosen by the suffix), atomically (temp file + rename).

    Args:
        frames: [T, H, W, 3] float in [0, 1] or a list of T PIL images of one size.
        path: target file ending in .gif or .webp.
        fps: frames per second (GIF stores durations in 1/100 s, so its rate is rounded).
        loop: repeat forever; False plays once.
        quality: WebP quality 0-100 (ignored for GIF, which is quantised to 256 colours per frame).
    Returns:
        the written path. Note that GIF writing merges identical consecutive frames (their durations add up).
    """
    path = Path(path)
    fmt = ANIMATION_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"cannot write an animation to {path.name!r}: use a .gif or .webp file name "
                         f"(or save_frames for numbered PNGs)")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not 0 <= int(quality) <= 100:
        raise ValueError(f"quality must be between 0 and 100, got {quality}")
    images = to_pil_frames(frames)
    duration = max(1, int(round(1000.0 / fps)))
    options: dict = {"save_all": True, "append_images": images[1:], "duration": duration}
    if fmt == "GIF":
        if loop:
            options["loop"] = 0                  # no loop key at all means "play once"
    else:
        options.update(loop=0 if loop else 1, quality=int(quality))
    with atomic_path(path) as tmp:
        images[0].save(tmp, format=fmt, **options)
    return path


def save_frames(frames: torch.Tensor | Sequence[Image.Image], folder: str | os.PathLike,
                prefix: str = "frame") -> list[Path]:
    """Write frames as numbered PNGs `<folder>/<prefix>_00000.png`, ..., each atomically.

    Args:
        frames: [T, H, W, 3] float in [0, 1] or a list of T PIL images of one size.
        folder: output folder (created if missing).
        prefix: file-name prefix without path separators.
    Returns:
        the T written paths, in frame order.
    """
    if not prefix or any(sep in prefix for sep in ("/", "\\")) or prefix in (".", ".."):
        raise ValueError(f"prefix {prefix!r} must be a plain file-name prefix such as 'frame' (no folders)")
    images = to_pil_frames(frames)
    folder = Path(folder)
    digits = max(5, len(str(len(images) - 1)))
    paths = []
    for i, img in enumerate(images):
        target = folder / f"{prefix}_{i:0{digits}d}.png"
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG")
        paths.append(target)
    return paths
