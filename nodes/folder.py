"""Folder nodes: load a folder of photos as one batch with their file names, and save a batch under those names."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from . import _comfy

log = logging.getLogger("hyperstyle.nodes")

FIT_CHOICES = ["pad", "crop", "stretch"]
DEFAULT_PATTERN = "*.jpg;*.jpeg;*.png;*.webp"


def resolve_directory(directory: str) -> Path:
    """Empty -> ComfyUI's input folder; relative -> inside it; absolute (or ~) -> as given."""
    text = (directory or "").strip()
    if not text:
        return _comfy.input_directory()
    path = Path(text).expanduser()
    return path if path.is_absolute() else _comfy.input_directory() / path


def _selected_files(directory: str, pattern: str, cap: int, skip: int) -> tuple[Path, list[Path]]:
    from ..hyperstyle_core.io.folders import list_folder

    folder = resolve_directory(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"HyperStyle Load Image Folder: folder {folder} does not exist. Leave directory empty "
                                f"for ComfyUI's input folder, give a sub-folder of it, or an absolute path.")
    files = list_folder(folder, pattern)[skip:]
    return folder, files[:cap] if cap > 0 else files


def _fit(img, size: tuple[int, int], mode: str):
    """PIL image -> exactly `size` (w, h): pad (letterbox, aspect kept), crop (cover, centred) or stretch."""
    from PIL import Image, ImageOps

    if img.size == size:
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


class HyperStyleLoadImageFolder:
    CATEGORY = "HyperStyle/batch"
    FUNCTION = "execute"
    DESCRIPTION = ("Loads the photos of a folder as one IMAGE batch, plus their file names (one per line) for "
                   "HyperStyle Save Images Named. Images of other sizes are fitted to the first image's size (fit). "
                   "Files that cannot be read (not an image, truncated, under 64 px, above 80 megapixels) are left "
                   "out with a warning in the log; EXIF rotation, grayscale, RGBA, CMYK and 16-bit are converted. "
                   "The whole selection is held in memory: use cap and skip to walk a large folder in slices.")
    RETURN_TYPES = ("IMAGE", "STRING")
    RETURN_NAMES = ("images", "names")
    OUTPUT_TOOLTIPS = ("The photos as one batch, in file-name order, all at the first photo's size.",
                       "Their file names, one per line, in batch order (connect to Save Images Named).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "directory": ("STRING", {"default": "",
                                     "tooltip": "Folder to read. Empty: ComfyUI's input folder; a relative path is a "
                                                "sub-folder of it; absolute paths are allowed. Not recursive."}),
            "pattern": ("STRING", {"default": DEFAULT_PATTERN,
                                   "tooltip": "File-name patterns separated by ';' (case-insensitive), "
                                              "e.g. *.jpg;*.png or portrait_*.jpg."}),
            "cap": ("INT", {"default": 0, "min": 0, "max": 100000,
                            "tooltip": "Load at most this many files (after skip); 0 = all of them."}),
            "skip": ("INT", {"default": 0, "min": 0, "max": 1000000,
                             "tooltip": "Leave out the first N matching files (in name order), e.g. to continue "
                                        "with the next slice of a big folder."}),
            "fit": (FIT_CHOICES, {"default": "pad",
                                  "tooltip": "How other sizes are made the first image's size: pad (whole photo, "
                                             "aspect kept, black borders), crop (fill, centre crop) or stretch."}),
        }}

    @classmethod
    def IS_CHANGED(cls, directory="", pattern=DEFAULT_PATTERN, cap=0, skip=0, fit="pad"):
        try:
            folder, files = _selected_files(directory, pattern, cap, skip)
        except (OSError, ValueError):
            return float("nan")     # never equal: re-run and report the problem
        h = hashlib.sha256(f"{folder}|{fit}".encode())
        for f in files:
            try:
                st = f.stat()
                h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{f.name}|missing".encode())
        return h.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, directory="", pattern=DEFAULT_PATTERN):
        folder = resolve_directory(directory)
        if not folder.is_dir():
            return (f"folder {folder} does not exist; leave directory empty for ComfyUI's input folder, give a "
                    f"sub-folder of it, or an absolute path")
        return True

    def execute(self, directory="", pattern=DEFAULT_PATTERN, cap=0, skip=0, fit="pad"):
        from ..hyperstyle_core.io.images import DEFAULT_MAX_PIXELS, MIN_IMAGE_SIDE, read_rgb

        if fit not in FIT_CHOICES:
            raise ValueError(f"HyperStyle Load Image Folder: fit must be one of {FIT_CHOICES}, got {fit!r}")
        folder, files = _selected_files(directory, pattern, cap, skip)
        if not files:
            raise ValueError(f"HyperStyle Load Image Folder: no file in {folder} matches {pattern!r} (skip {skip}). "
                             f"Check the pattern, or put photos into that folder.")
        progress = _comfy.Progress(len(files))
        batch, names, size = None, [], None
        for path in files:
            try:
                img, notes = read_rgb(path, DEFAULT_MAX_PIXELS)
                if min(img.size) < MIN_IMAGE_SIDE:
                    raise ValueError(f"{path.name} is {img.width}x{img.height} pixels; at least "
                                     f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE} are needed")
            except (ValueError, FileNotFoundError) as e:
                log.warning("HyperStyle Load Image Folder: leaving out %s: %s", path.name, e)
                progress.step()
                continue
            if notes:
                log.info("HyperStyle Load Image Folder: %s: %s", path.name, "; ".join(notes))
            if size is None:
                size = img.size
                batch = torch.empty(len(files), size[1], size[0], 3)     # one allocation for the whole batch
            batch[len(names)] = torch.from_numpy(np.asarray(_fit(img, size, fit), dtype=np.float32) / 255.0)
            names.append(path.name)
            progress.step()
        if not names:
            raise ValueError(f"HyperStyle Load Image Folder: none of the {len(files)} matching file(s) in {folder} "
                             f"could be read as a photo (see the log for each reason)")
        return (batch[:len(names)].clone() if len(names) < len(files) else batch, "\n".join(names))


def _check_subfolder(subfolder: str) -> str:
    sub = (subfolder or "").strip().replace("\\", "/").strip("/")
    if sub.startswith("~") or Path(subfolder.strip()).is_absolute() or ".." in sub.split("/"):
        raise ValueError(f"HyperStyle Save Images Named: subfolder {subfolder!r} must be a relative folder inside "
                         f"ComfyUI's output folder")
    return sub


class HyperStyleSaveImagesNamed:
    CATEGORY = "HyperStyle/batch"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = ("Saves a batch as PNG files named after the input files (from HyperStyle Load Image Folder): "
                   "photo.jpg -> <subfolder>/photo<suffix>.png in ComfyUI's output folder. Existing files of the same "
                   "name are replaced; each file is written atomically. Names that clash (a.jpg and a.png) become "
                   "a_jpg / a_png. With k images per name (e.g. an edit sweep) the files get _01 .. _k.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("paths",)
    OUTPUT_TOOLTIPS = ("The written files, one path per line.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Images to save, in the same order as the names (or k per name)."}),
            "names": ("STRING", {"forceInput": True,
                                 "tooltip": "File names, one per line (the names output of Load Image Folder)."}),
            "subfolder": ("STRING", {"default": "hyperstyle_folder",
                                     "tooltip": "Folder inside ComfyUI's output folder (created)."}),
            "suffix": ("STRING", {"default": "",
                                  "tooltip": "Appended to each name before .png, e.g. _pasted; empty keeps the name."}),
        }}

    def execute(self, images, names, subfolder="hyperstyle_folder", suffix=""):
        from PIL import Image

        from ..hyperstyle_core.run.naming import unique_stems
        from ..hyperstyle_core.io.files import atomic_path
        from ._images import to_rgb

        images = to_rgb(images, "HyperStyle Save Images Named images")
        name_list = [n.strip() for n in (names.splitlines() if isinstance(names, str) else list(names)) if n.strip()]
        if not name_list:
            raise ValueError("HyperStyle Save Images Named: names is empty; connect the names output of HyperStyle "
                             "Load Image Folder")
        if any(c in suffix for c in "/\\:"):
            raise ValueError(f"HyperStyle Save Images Named: suffix {suffix!r} must not contain / \\ or :")
        n, m = images.shape[0], len(name_list)
        if n % m:
            raise ValueError(f"HyperStyle Save Images Named got {n} images for {m} names; give one image per name "
                             f"(or the same number per name, e.g. from an edit sweep)")
        per_name = n // m
        sub = _check_subfolder(subfolder)
        folder = _comfy.output_directory() / sub
        folder.mkdir(parents=True, exist_ok=True)
        stems = unique_stems(name_list)
        progress = _comfy.Progress(n)
        paths, ui = [], []
        for k in range(n):
            stem = stems[k // per_name] + suffix + (f"_{k % per_name + 1:02d}" if per_name > 1 else "")
            path = folder / f"{stem}.png"
            arr = (images[k].float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            with atomic_path(path) as tmp:
                Image.fromarray(arr).save(tmp, format="PNG")
            paths.append(str(path))
            ui.append({"filename": path.name, "subfolder": sub, "type": "output"})
            progress.step()
        return {"ui": {"images": ui}, "result": ("\n".join(paths),)}
