"""ComfyUI IMAGE [B, H, W, C] float 0..1 <-> core images [B, 3, H, W] in [-1, 1]; PNGs with ComfyUI metadata."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from PIL.PngImagePlugin import PngInfo

from ..hyperstyle_core import MIN_IMAGE_SIDE, atomic_path, to_pil_frames, to_unit_range


def to_rgb(images: torch.Tensor, what: str = "image") -> torch.Tensor:
    """Validate an IMAGE batch and make it 3-channel: grayscale is repeated, RGBA drops its alpha."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = list(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what}: expected a ComfyUI IMAGE batch [B, H, W, C], got {shape}")
    channels = images.shape[-1]
    if channels == 1:
        images = images.expand(-1, -1, -1, 3)
    elif channels == 4:
        images = images[..., :3]
    elif channels != 3:
        raise ValueError(f"{what}: images have {channels} channels; use RGB (3), grayscale (1) or RGBA (4)")
    if images.shape[0] == 0:
        raise ValueError(f"{what}: the batch is empty")
    return images


def check_min_size(images: torch.Tensor, what: str, minimum: int | None = None) -> None:
    """Raise ValueError if the images are smaller than `minimum` (default: the core's MIN_IMAGE_SIDE, 64 px)."""

    minimum = MIN_IMAGE_SIDE if minimum is None else minimum
    h, w = images.shape[1], images.shape[2]
    if min(h, w) < minimum:
        raise ValueError(f"{what} is {w}x{h} pixels; HyperStyle needs at least {minimum}x{minimum}. Use a larger "
                         f"photo and align it with HyperStyle Align Face first.")


def comfy_to_model_input(images: torch.Tensor, height: int, width: int, what: str = "image") -> torch.Tensor:
    """IMAGE [B, H, W, C] 0..1 -> [B, 3, height, width] in [-1, 1] (antialiased bilinear resize, like PIL's)."""
    images = to_rgb(images, what)
    check_min_size(images, what)
    x = images.permute(0, 3, 1, 2).float()
    if x.shape[2:] != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    return x.clamp(0, 1) * 2 - 1


def model_output_to_comfy(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] roughly in [-1, 1] -> IMAGE [B, H, W, 3] float32 0..1 on the CPU."""
    return to_unit_range(images).permute(0, 2, 3, 1).contiguous()


def save_png_with_metadata(image: torch.Tensor, path: Path, metadata: PngInfo | None) -> Path:
    """Write one [H, W, 3] image in [0, 1] as an 8-bit PNG, atomically, with ComfyUI's text chunks (`metadata`, from
    _comfy.png_metadata; None writes none). The core's save_png writes the same pixels without them."""
    (picture,) = to_pil_frames(image[None])
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG", pnginfo=metadata)
    return path
