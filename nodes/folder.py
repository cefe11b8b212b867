"""Folder nodes: load a folder of photos as one batch with their file names, and save a batch under those names."""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from ..hyperstyle_core import (DEFAULT_MAX_BATCH_PIXELS, DEFAULT_MAX_PIXELS, FIT_MODES, list_folder, named_png_files,
                               printable, read_image_batch)
from . import _comfy
from ._images import save_png_with_metadata, to_rgb

log = logging.getLogger("hyperstyle.nodes")

DEFAULT_PATTERN = "*.jpg;*.jpeg;*.png;*.webp"
DEFAULT_SUBFOLDER = "HyperStyle/folder"
MAX_BATCH_PIXELS = DEFAULT_MAX_BATCH_PIXELS     # all photos of one load together (4.8 GB as a float IMAGE batch)


def resolve_directory(directory: str) -> Path:
    """Empty -> ComfyUI's input folder; relative -> inside it; absolute (or ~) -> as given."""
    text = (directory or "").strip()
    if not text:
        return _comfy.input_directory()
    path = Path(text).expanduser()
    return path if path.is_absolute() else _comfy.input_directory() / path


def _selected_files(directory: str, pattern: str, cap: int, skip: int) -> tuple[Path, list[Path]]:
    folder = resolve_directory(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"HyperStyle Load Image Folder: folder {folder} does not exist. Leave directory empty "
                                f"for ComfyUI's input folder, give a sub-folder of it, or an absolute path.")
    try:
        files = list_folder(folder, pattern)[skip:]
    except ValueError as e:     # a folder we may not read
        raise ValueError(f"HyperStyle Load Image Folder: {e}") from None
    return folder, files[:cap] if cap > 0 else files


class HyperStyleLoadImageFolder:
    CATEGORY = "HyperStyle/batch"
    FUNCTION = "execute"
    DESCRIPTION = ("Loads the photos of a folder as one IMAGE batch, plus their file names (one per line) for "
                   "HyperStyle Save Images Named. Images of other sizes are fitted to the first image's size (fit). "
                   "Files that cannot be read (not an image, truncated, under 64 px, above 80 megapixels, a broken "
                   "link) are left out with a warning in the log; EXIF rotation, grayscale, RGBA, CMYK and 16-bit "
                   "are converted. The whole selection is held in memory (at most "
                   f"{MAX_BATCH_PIXELS // 10**6} megapixels in all): use cap and skip to walk a large folder "
                   "in slices.")
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
            "fit": (list(FIT_MODES), {"default": "pad",
                                  "tooltip": "How other sizes are made the first image's size: pad (whole photo, "
                                             "aspect kept, black borders), crop (fill, centre crop) or stretch."}),
        }}

    @classmethod
    def IS_CHANGED(cls, directory="", pattern=DEFAULT_PATTERN, cap=0, skip=0, fit="pad"):
        try:
            folder, files = _selected_files(directory, pattern, cap, skip)
        except (OSError, ValueError):
            return float("nan")     # never equal: re-run and report the problem
        # surrogatepass: names with undecodable bytes hash too (they are lone surrogates in Python)
        h = hashlib.sha256(f"{folder}|{fit}".encode("utf-8", "surrogatepass"))
        for f in files:
            try:
                st = f.stat()
                h.update(f"{f.name}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8", "surrogatepass"))
            except OSError:     # a broken link or a symlink loop: execute leaves it out with a warning
                h.update(f"{f.name}|missing".encode("utf-8", "surrogatepass"))
        return h.hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, directory="", pattern=DEFAULT_PATTERN):
        folder = resolve_directory(directory)
        if not folder.is_dir():
            return (f"folder {folder} does not exist; leave directory empty for ComfyUI's input folder, give a "
                    f"sub-folder of it, or an absolute path")
        return True

    def execute(self, directory="", pattern=DEFAULT_PATTERN, cap=0, skip=0, fit="pad"):
        if fit not in FIT_MODES:
            raise ValueError(f"HyperStyle Load Image Folder: fit must be one of {list(FIT_MODES)}, got {fit!r}")
        folder, files = _selected_files(directory, pattern, cap, skip)
        if not files:
            raise ValueError(f"HyperStyle Load Image Folder: no file in {folder} matches {pattern!r} (skip {skip}). "
                             f"Check the pattern, or put photos into that folder.")
        # The names output has one name per line, so a name with a line break could not be passed on intact.
        for f in [f for f in files if "\n" in f.name or "\r" in f.name]:
            log.warning("HyperStyle Load Image Folder: leaving out %s: its name has a line break; rename the file",
                        printable(f.name))
            files.remove(f)
        if not files:
            raise ValueError(f"HyperStyle Load Image Folder: every matching file in {folder} has a line break in its "
                             f"name; rename them")
        progress = _comfy.Progress(len(files))
        try:
            batch = read_image_batch(files, fit, DEFAULT_MAX_PIXELS, on_file=progress.step,
                                     max_total_pixels=MAX_BATCH_PIXELS)
        except ValueError as e:
            raise ValueError(f"HyperStyle Load Image Folder: in {folder}, {e}") from None
        for name, reason in batch.skipped:
            log.warning("HyperStyle Load Image Folder: leaving out %s: %s", printable(name), printable(reason))
        for name, converted in batch.notes:
            log.info("HyperStyle Load Image Folder: %s: %s", printable(name), converted)
        return (batch.pixels, "\n".join(batch.names))


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
                   "a_jpg / a_png. With k images per name (e.g. an edit sweep) the files get _01 .. _k. Each PNG "
                   "carries the workflow, as ComfyUI's Save Image does (drag it onto the canvas to restore it).")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("paths",)
    OUTPUT_TOOLTIPS = ("The written files, one path per line.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Images to save, in the same order as the names (or k per name)."}),
            "names": ("STRING", {"forceInput": True,
                                 "tooltip": "File names, one per line (the names output of Load Image Folder)."}),
            "subfolder": ("STRING", {"default": DEFAULT_SUBFOLDER,
                                     "tooltip": "Folder inside ComfyUI's output folder (created)."}),
            "suffix": ("STRING", {"default": "",
                                  "tooltip": "Appended to each name before .png, e.g. _pasted; empty keeps the name."}),
        }, "hidden": dict(_comfy.WORKFLOW_INPUTS)}

    def execute(self, images, names, subfolder=DEFAULT_SUBFOLDER, suffix="", prompt=None, extra_pnginfo=None):
        images = to_rgb(images, "HyperStyle Save Images Named images")
        name_list = [n.strip() for n in (names.splitlines() if isinstance(names, str) else list(names)) if n.strip()]
        if not name_list:
            raise ValueError("HyperStyle Save Images Named: names is empty; connect the names output of HyperStyle "
                             "Load Image Folder")
        try:
            file_names = named_png_files(name_list, images.shape[0], suffix)
        except ValueError as e:
            raise ValueError(f"HyperStyle Save Images Named: {e}") from None
        sub = _check_subfolder(subfolder)
        folder = _comfy.output_directory() / sub
        folder.mkdir(parents=True, exist_ok=True)
        progress = _comfy.Progress(len(file_names))
        metadata = _comfy.png_metadata(prompt, extra_pnginfo)
        paths, ui = [], []
        for image, name in zip(images, file_names):
            paths.append(str(save_png_with_metadata(image, folder / name, metadata)))
            ui.append({"filename": name, "subfolder": sub, "type": "output"})
            progress.step()
        return {"ui": {"images": ui}, "result": ("\n".join(paths),)}
