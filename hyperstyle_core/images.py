"""Image <-> tensor conversions matching the official transforms (Resize on PIL, ToTensor, Normalize(0.5, 0.5))."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps


def open_rgb(path: str | os.PathLike) -> Image.Image:
    """Open an image file as RGB, honouring EXIF rotation. Raises ValueError for anything that is not an image."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grayscale: scale to 8 bit before converting (PIL would clip).
                arr = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(np.clip(arr / max(arr.max(), 1) * 255, 0, 255).astype(np.uint8))
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return img.convert("RGB")
    except (OSError, SyntaxError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path.name} could not be read as an image ({e}); use a JPEG or PNG photo") from None


def pil_to_input(img: Image.Image, height: int = 256, width: int = 256) -> torch.Tensor:
    """PIL RGB -> [1, 3, height, width] in [-1, 1], as the official inference transform (bilinear PIL resize)."""
    img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (arr * 2 - 1).unsqueeze(0)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] (or [1, 3, H, W]) in [-1, 1] -> PIL RGB, as the official tensor2im (clamp, scale, truncate)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = ((image.detach().float().cpu() + 1) / 2).clamp(0, 1) * 255
    return Image.fromarray(arr.permute(1, 2, 0).numpy().astype(np.uint8))
