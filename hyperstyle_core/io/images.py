"""Image <-> tensor conversions matching the official transforms (Resize on PIL, ToTensor, Normalize(0.5, 0.5)).

`read_rgb` is the one place files become RGB pictures: EXIF rotation, alpha, palette, CMYK, 16-bit and float modes,
a pixel limit and errors that say what was wrong (`ImageReadError.code` for machine-readable reasons).
"""
from __future__ import annotations

import os
import stat
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from .files import atomic_path
from .folders import escape_undecodable

EXIF_ORIENTATION = 0x0112
_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
MIN_IMAGE_SIDE = 64                # smallest usable side: dlib finds faces down to ~40 px; encoders need a real picture
DEFAULT_MAX_PIXELS = 80_000_000    # refused above, before decoding: 80 MP decode to 240 MB; PIL itself warns at 89 MP
DEFAULT_MAX_BATCH_PIXELS = 400_000_000   # one `read_image_batch`: 4.8 GB as float32 RGB, e.g. 33 photos of 12 MP


class ImageReadError(ValueError):
    """A file that cannot be used as a picture. `code` is one of: empty, not_an_image, truncated, too_large,
    unsupported_mode, non_finite (NaN or infinite pixel values), unreadable."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def read_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> tuple[Image.Image, list[str]]:
    """Open an image file as an upright RGB picture and say what had to be converted.

    Args:
        path: an image file (anything PIL reads: JPEG, PNG, WebP, TIFF, BMP, GIF ...).
        max_pixels: refuse pictures with more pixels than this before decoding them (None: only PIL's own
            decompression-bomb limit applies).
    Returns:
        (RGB image, notes) where notes are short phrases such as "rotated per EXIF orientation 6", "CMYK converted
        to RGB", "alpha composited over white", "16-bit grayscale scaled to 8-bit", "first of 3 frames".
    Raises:
        FileNotFoundError: the path does not exist (or is a broken link).
        ImageReadError (a ValueError): anything else, with `code` saying why.
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist" + (" (broken link)" if path.is_symlink() else "")) from None
    except OSError as e:    # a symlink loop, no permission, a file name too long
        raise ImageReadError(f"{path.name} could not be read ({e.strerror or e})", "unreadable") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageReadError(f"{path.name} is a folder, not an image file", "not_an_image")
    if st.st_size == 0:
        raise ImageReadError(f"{path.name} is an empty file (0 bytes); copy it again", "empty")
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)     # our own limit decides
            with Image.open(path) as img:
                width, height = img.size
                if width < 1 or height < 1:
                    raise ImageReadError(f"{path.name} has no pixels ({width}x{height})", "not_an_image")
                if max_pixels is not None and width * height > max_pixels:
                    raise ImageReadError(
                        f"{path.name} is {width}x{height} = {width * height / 1e6:.0f} megapixels, above the limit of "
                        f"{max_pixels / 1e6:.0f}; downscale it or raise the limit (--max-pixels)", "too_large")
                frames = getattr(img, "n_frames", 1)
                if frames > 1:
                    notes.append(f"first of {frames} frames")
                img.load()
                orientation = img.getexif().get(EXIF_ORIENTATION, 1)
                if orientation in range(2, 9):
                    notes.append(f"rotated per EXIF orientation {orientation}")
                img = ImageOps.exif_transpose(img)
                return _to_rgb(img, path.name, notes), notes
    except Image.DecompressionBombError as e:
        raise ImageReadError(f"{path.name} is too large to decode safely ({e}); downscale it", "too_large") from None
    except ImageReadError:
        raise
    except (OSError, SyntaxError, EOFError, ValueError, TypeError, IndexError, KeyError, MemoryError) as e:
        # PIL reports broken files through many exception types; truncation says so in the message.
        text = str(e) or type(e).__name__
        if isinstance(e, MemoryError):
            raise ImageReadError(f"{path.name} needs more memory to decode than is available; downscale it",
                                 "too_large") from None
        if "truncated" in text.lower() or isinstance(e, EOFError):
            raise ImageReadError(f"{path.name} is truncated ({text}); it was cut off while copying or downloading. "
                                 f"Copy it again", "truncated") from None
        if isinstance(e, PermissionError):
            raise ImageReadError(f"{path.name} could not be read (permission denied)", "unreadable") from None
        raise ImageReadError(f"{path.name} could not be read as an image ({text}); use a JPEG or PNG photo",
                             "not_an_image") from None


def _to_rgb(img: Image.Image, name: str, notes: list[str]) -> Image.Image:
    """Any decoded PIL mode -> RGB, appending what was done to `notes`."""
    mode = img.mode
    if mode in _WIDE_GRAY_MODES:
        # 16-bit / 32-bit / float grayscale: scale to 8 bit before converting (PIL would clip).
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():      # one NaN would turn the whole picture black below
            raise ImageReadError(f"{name} holds NaN or infinite pixel values; save it again with finite values (or "
                                 f"as an 8- or 16-bit image)", "non_finite")
        notes.append(f"{'float' if mode == 'F' else '16-bit' if mode.startswith('I;16') else '32-bit'} grayscale "
                     f"scaled to 8-bit")
        arr = arr - min(float(arr.min()), 0.0)
        img = Image.fromarray(np.clip(arr / max(arr.max(), 1e-12 if mode == "F" else 1) * 255, 0, 255).astype(np.uint8))
    elif mode in ("L", "1"):
        notes.append("grayscale" if mode == "L" else "1-bit")
    elif mode == "CMYK":
        notes.append("CMYK converted to RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        notes.append("alpha composited over white")
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    try:
        return img.convert("RGB")
    except ValueError as e:
        raise ImageReadError(f"{name} has colour mode {mode}, which cannot be converted to RGB ({e}); save it as an "
                             f"RGB JPEG or PNG", "unsupported_mode") from None


FIT_MODES = ("pad", "crop", "stretch")


def fit_to_size(img: Image.Image, size: tuple[int, int], mode: str = "pad") -> Image.Image:
    """PIL image -> exactly `size` (width, height): pad (letterbox, aspect kept, black borders), crop (cover,
    centred) or stretch. Lanczos resampling; an image already of that size is returned as it is."""
    if mode not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {list(FIT_MODES)}, got {mode!r}")
    if img.size == tuple(size):
        return img
    if mode == "stretch":
        return img.resize(size, Image.Resampling.LANCZOS)
    if mode == "crop":
        return ImageOps.fit(img, size, Image.Resampling.LANCZOS)
    scale = min(size[0] / img.width, size[1] / img.height)
    inner = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(img.resize(inner, Image.Resampling.LANCZOS), ((size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2))
    return canvas


@dataclass
class ImageBatch:
    """Photos read as one batch by `read_image_batch`.

    pixels:  [N, H, W, 3] float32 in [0, 1] (channel-last, as ComfyUI's IMAGE), all at the first readable photo's size.
    names:   the file names of the N photos, in batch order.
    skipped: (file name, reason) for every file left out.
    notes:   (file name, what was converted) for photos that needed conversion (EXIF rotation, CMYK, ...).
    """
    pixels: torch.Tensor
    names: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)


def read_image_batch(paths: Sequence[str | os.PathLike], fit: str = "pad", max_pixels: int | None = DEFAULT_MAX_PIXELS,
                     on_file: Callable[[], None] | None = None,
                     max_total_pixels: int | None = DEFAULT_MAX_BATCH_PIXELS) -> ImageBatch:
    """Read image files into one batch; files that cannot be used are skipped and reported, never fatal.

    Every photo is fitted (`fit_to_size`) to the first readable photo's size. Memory is taken only for the photos
    actually read (8-bit until the float batch is made at the end), and the batch may hold at most
    `max_total_pixels` pixels (None: no limit). Names and reasons are valid text (`escape_undecodable`).
    Raises ValueError when no file could be read, or before keeping a photo that would exceed `max_total_pixels`
    (the message says how many files to load at a time). `on_file` is called once per file (progress,
    interruption: raise to stop).
    """
    if fit not in FIT_MODES:
        raise ValueError(f"fit mode must be one of {list(FIT_MODES)}, got {fit!r}")
    if max_total_pixels is not None and (isinstance(max_total_pixels, bool) or not isinstance(max_total_pixels, int)
                                         or max_total_pixels < 1):
        raise ValueError(f"max_total_pixels must be a positive integer or None, got {max_total_pixels!r}")
    fitted: list[np.ndarray | None] = []      # [H, W, 3] uint8 per photo read: a quarter of its float32 size
    names, skipped, notes, size = [], [], [], None
    for path in map(Path, paths):
        name = escape_undecodable(path.name)
        try:
            img, converted = read_rgb(path, max_pixels)
            if min(img.size) < MIN_IMAGE_SIDE:
                raise ValueError(f"{path.name} is {img.width}x{img.height} pixels; at least "
                                 f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed")
        except (ValueError, FileNotFoundError) as e:
            skipped.append((name, escape_undecodable(str(e))))
        else:
            size = size or img.size
            _check_batch_pixels(len(fitted) + 1, size, max_total_pixels, name)
            if converted:
                notes.append((name, "; ".join(converted)))
            fitted.append(np.asarray(fit_to_size(img, size, fit), dtype=np.uint8))
            names.append(name)
        if on_file is not None:
            on_file()
    if not names:
        raise ValueError(f"none of the {len(paths)} file(s) could be read as a photo: "
                         + "; ".join(f"{name}: {reason}" for name, reason in skipped[:5]))
    pixels = torch.empty(len(fitted), size[1], size[0], 3)
    for i, arr in enumerate(fitted):
        pixels[i] = torch.from_numpy(arr.astype(np.float32) / 255.0)
        fitted[i] = None        # frees the 8-bit copy as the float batch fills
    return ImageBatch(pixels, names, skipped, notes)


def _check_batch_pixels(count: int, size: tuple[int, int], max_total_pixels: int | None, name: str) -> None:
    """Refuse the `count`-th photo of a batch at `size` (width, height) when the batch would exceed the limit."""
    per_photo = size[0] * size[1]
    if max_total_pixels is None or count * per_photo <= max_total_pixels:
        return
    fits = max_total_pixels // per_photo
    if fits == 0:
        raise ValueError(f"{name} is {size[0]}x{size[1]} = {per_photo / 1e6:.0f} megapixels, above the limit of "
                         f"{max_total_pixels / 1e6:.0f} megapixels for one batch; downscale it")
    raise ValueError(f"{name} would make the batch {count} photos of {size[0]}x{size[1]} = "
                     f"{count * per_photo / 1e6:.0f} megapixels, above the limit of {max_total_pixels / 1e6:.0f} "
                     f"megapixels for one batch ({max_total_pixels * 12 / 1e9:.1f} GB as 32-bit floats); load at "
                     f"most {fits} files at a time (cap {fits}, then skip {fits}, {2 * fits}, ...)")


def open_rgb(path: str | os.PathLike, max_pixels: int | None = None) -> Image.Image:
    """Open an image file as RGB, honouring EXIF rotation. Raises ValueError for anything that is not an image
    (see `read_rgb`, which also returns what was converted)."""
    return read_rgb(path, max_pixels)[0]


def pil_to_input(img: Image.Image, height: int = 256, width: int = 256) -> torch.Tensor:
    """PIL RGB -> [1, 3, height, width] in [-1, 1], as the official inference transform (bilinear PIL resize)."""
    img = img.convert("RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    arr = torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0
    return (arr * 2 - 1).unsqueeze(0)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output roughly in [-1, 1] (any layout) -> float32 on the CPU in [0, 1], clamped; the one place
    this conversion is written (PNG writing, ComfyUI IMAGE outputs, animation frames)."""
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """[3, H, W] (or [1, 3, H, W]) in [-1, 1] -> PIL RGB, as the official tensor2im (clamp, scale, truncate)."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"tensor_to_pil takes one image, got a batch of {image.shape[0]}")
        image = image[0]
    arr = to_unit_range(image) * 255
    return Image.fromarray(arr.permute(1, 2, 0).numpy().astype(np.uint8))


def save_png(image: Image.Image | torch.Tensor, path: str | os.PathLike) -> Path:
    """Write a PIL image, or a [H, W, 3] tensor in [0, 1] (rounded to 8 bit), as a PNG file atomically."""
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(f"save_png takes one [H, W, 3] image, got shape {list(image.shape)}")
        image = Image.fromarray((image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy())
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path
