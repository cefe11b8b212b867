"""The one place that touches ComfyUI (folder_paths, model_management, ProgressBar, cli_args), with stand-ins
outside it.

Outside ComfyUI (tests, scripts) models are looked up in the pack's own models/ folder and in the folders listed in
the HYPERSTYLE_MODEL_DIRS environment variable (os.pathsep-separated).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from PIL.PngImagePlugin import PngInfo

from ..hyperstyle_core import resolve_device

log = logging.getLogger("hyperstyle.nodes")

MODEL_FOLDER = "hyperstyle"
# .pt listed so choosing one gets the "convert it" message; .npy for the official StyleCLIP fs3.npy
MODEL_EXTENSIONS = {".safetensors", ".pt", ".pth", ".npy"}
PACK_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

try:  # ComfyUI present
    import comfy.model_management as model_management  # type: ignore
    import comfy.utils as comfy_utils  # type: ignore
    import folder_paths  # type: ignore
    from comfy.cli_args import args as comfy_args  # type: ignore
    IN_COMFY = True
except ImportError:
    folder_paths = model_management = comfy_utils = comfy_args = None
    IN_COMFY = False


def register_model_folder() -> None:
    """Add ComfyUI's models/hyperstyle and the pack's models/ to the 'hyperstyle' folder type (appending, so the
    user's extra_model_paths.yaml entries stay) and restrict it to weight files."""
    if not IN_COMFY:
        return
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))
    folder_paths.add_model_folder_path(MODEL_FOLDER, str(PACK_MODELS_DIR))
    entry = folder_paths.folder_names_and_paths[MODEL_FOLDER]
    extensions = entry[1]
    if isinstance(extensions, set):
        extensions.update(MODEL_EXTENSIONS)
    else:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = (entry[0], set(extensions) | MODEL_EXTENSIONS)


def _fallback_dirs() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("HYPERSTYLE_MODEL_DIRS", "").split(os.pathsep) if p]
    return extra + [PACK_MODELS_DIR]


def list_model_files() -> list[str]:
    """Relative names of the weight files in every 'hyperstyle' model folder (sub-folders included)."""
    if IN_COMFY:
        return sorted(folder_paths.get_filename_list(MODEL_FOLDER))
    names = set()
    for root in _fallback_dirs():
        if root.is_dir():
            for f in root.rglob("*"):
                if f.is_file() and f.suffix.lower() in MODEL_EXTENSIONS:
                    names.add(f.relative_to(root).as_posix())
    return sorted(names)


_DRIVE = re.compile(r"^[A-Za-z]:")


def _escape_problem(name: str) -> str | None:
    """Why a '/'-separated name could leave the folder it is relative to (absolute, '..', a drive), or None."""
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "contains control characters"
    if name.startswith("/") or _DRIVE.match(name):
        return "is an absolute path"
    if any(part in (".", "..") for part in name.split("/")):
        return "has '.' or '..' parts"
    return None


def check_relative_name(name: str, what: str, folder: str) -> None:
    """Refuse a file name picked from a list (`what`: e.g. "Model file") that would leave `folder` (its description).

    ComfyUI checks a list choice against its options only when the node has no VALIDATE_INPUTS for it, and the
    stand-ins outside ComfyUI never do, so a name typed into the API or a workflow file is checked here.
    """
    problem = "is not a file name" if not isinstance(name, str) else _escape_problem(name.replace("\\", "/"))
    if problem:
        raise ValueError(f"{what} {name!r} {problem}; choose a file from the list (names are relative to {folder})")


def resolve_model_path(name: str) -> Path:
    """Full path of a file picked from the hyperstyle model folders; ValueError for a name that would leave them,
    FileNotFoundError if it is not there."""
    check_relative_name(name, "Model file", "the hyperstyle model folders")
    if IN_COMFY:
        full = folder_paths.get_full_path(MODEL_FOLDER, name)
        if full:
            return Path(full)
    else:
        for root in _fallback_dirs():
            candidate = root / name
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"Model file {name!r} was not found in the hyperstyle model folders "
                            f"(ComfyUI/models/hyperstyle/ or the pack's models/). Put the converted .safetensors "
                            f"there, then refresh the page.")


def torch_device():
    if IN_COMFY:
        return model_management.get_torch_device()
    return resolve_device("auto") if os.environ.get("HYPERSTYLE_DEVICE") is None else torch.device(
        os.environ["HYPERSTYLE_DEVICE"])


def check_interrupt() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel."""
    if IN_COMFY:
        model_management.throw_exception_if_processing_interrupted()


def soft_empty_cache() -> None:
    if IN_COMFY:
        model_management.soft_empty_cache()
    else:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


class Progress:
    """ComfyUI ProgressBar (a no-op outside ComfyUI) that also checks for interruption on every step."""

    def __init__(self, total: int):
        self.bar = comfy_utils.ProgressBar(total) if IN_COMFY else None
        self.done = 0
        self.total = total

    def step(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        check_interrupt()


def output_directory() -> Path:
    if IN_COMFY:
        return Path(folder_paths.get_output_directory())
    return Path(os.environ.get("HYPERSTYLE_OUTPUT_DIR", "output"))


def output_file(name: str, what: str) -> Path:
    """A file picked from the output folder by a Load node (`what`: its display name)."""
    check_relative_name(name, f"{what}: file", "ComfyUI's output folder")
    path = output_directory() / name
    if not path.is_file():
        raise FileNotFoundError(f"{what}: {name!r} is not in ComfyUI's output folder ({output_directory()}); save "
                                f"one first, then refresh the page")
    return path


def input_directory() -> Path:
    """ComfyUI's input folder (outside ComfyUI: $HYPERSTYLE_INPUT_DIR, default ./input)."""
    if IN_COMFY:
        return Path(folder_paths.get_input_directory())
    return Path(os.environ.get("HYPERSTYLE_INPUT_DIR", "input"))


def _save_image_path_standin(filename_prefix: str, output_dir: str) -> tuple[str, str, int, str, str]:
    """Outside ComfyUI: the same contract as folder_paths.get_save_image_path (folder, name, next counter,
    subfolder, prefix), including its refusal of prefixes that leave the output folder."""
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise ValueError("Saving outside the output folder is not allowed")
    counter = 1
    if os.path.isdir(full_output_folder):
        for name in os.listdir(full_output_folder):
            head, sep, rest = name.partition(filename + "_")
            digits = rest.split("_")[0]
            if not head and sep and digits.isdigit() and rest[len(digits):].startswith("_"):
                counter = max(counter, int(digits) + 1)
    return full_output_folder, filename, counter, subfolder, filename_prefix


def check_filename_prefix(filename_prefix: str, what: str) -> str:
    """The prefix with '/' separators, or ValueError naming the node (`what`) if it is empty or would leave the
    output folder (absolute, a drive, '.' or '..' parts, control characters)."""
    if not isinstance(filename_prefix, str):
        raise ValueError(f"{what}: filename_prefix must be text, got {type(filename_prefix).__name__}")
    prefix = filename_prefix.strip().replace("\\", "/")
    if not prefix or prefix.endswith("/"):
        raise ValueError(f"{what}: filename_prefix {filename_prefix!r} needs a file name, e.g. 'HyperStyle/result'")
    problem = _escape_problem(prefix)
    if problem:
        raise ValueError(f"{what}: filename_prefix {filename_prefix!r} {problem}; it must stay inside ComfyUI's "
                         f"output folder: use a relative name such as 'HyperStyle/result'")
    return prefix


def validate_filename_prefix(filename_prefix: str | None, what: str) -> bool | str:
    """VALIDATE_INPUTS for a save node: True, or the refusal message. None (a linked input) is checked at run time."""
    if filename_prefix is None:
        return True
    try:
        check_filename_prefix(filename_prefix, what)
    except ValueError as e:
        return str(e)
    return True


def save_path(filename_prefix: str, extension: str, what: str) -> tuple[Path, str]:
    """Next free `<output>/<subfolder>/<name>_<counter>_<extension>` for a filename prefix, named as ComfyUI's own
    save nodes name files (folder_paths.get_save_image_path). Returns (path, subfolder).

    `extension` includes its dot ('.safetensors'), or is '' for a folder of frames. A prefix that is empty or
    leaves the output folder raises ValueError naming the node (`what`), before ComfyUI's own check (which stays
    as a second line).
    """
    prefix = check_filename_prefix(filename_prefix, what)
    output_dir = os.path.abspath(str(output_directory()))
    try:
        if IN_COMFY:
            folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(prefix, output_dir)
        else:
            folder, name, counter, subfolder, _ = _save_image_path_standin(prefix, output_dir)
    except OSError:
        raise       # the output folder cannot be created or listed: the OS message names it
    except Exception as e:  # noqa: BLE001 - ComfyUI raises a bare Exception for prefixes that escape
        reason = str(e).replace("**** ERROR:", "").strip().splitlines()
        raise ValueError(f"{what}: filename_prefix {filename_prefix!r} must stay inside ComfyUI's output folder "
                         f"{output_dir} ({reason[0] if reason else type(e).__name__}); use a relative name such as "
                         f"'HyperStyle/result'") from None
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder) / f"{name}_{counter:05d}_{extension}", subfolder


# The hidden inputs through which ComfyUI hands a save node the graph it runs in (as core SaveImage declares them).
WORKFLOW_INPUTS = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


def png_metadata(prompt: Mapping[str, Any] | None, extra_pnginfo: Mapping[str, Any] | None) -> PngInfo | None:
    """The PNG text chunks core SaveImage writes: "prompt" and one per extra_pnginfo key (the frontend puts the graph
    under "workflow"), each JSON; dragging such a PNG onto the canvas restores the workflow. None when ComfyUI runs
    with --disable-metadata.

    Args:
        prompt: the hidden PROMPT input (the API graph), or None.
        extra_pnginfo: the hidden EXTRA_PNGINFO input ({"workflow": {...}}), or None.
    """
    if comfy_args is not None and comfy_args.disable_metadata:
        return None
    metadata = PngInfo()
    if prompt is not None:
        metadata.add_text("prompt", json.dumps(prompt))
    if extra_pnginfo is not None:
        for key in extra_pnginfo:
            metadata.add_text(key, json.dumps(extra_pnginfo[key]))
    return metadata
