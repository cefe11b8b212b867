"""The one place that touches ComfyUI (folder_paths, model_management, ProgressBar), with stand-ins outside it.

Outside ComfyUI (tests, scripts) models are looked up in the pack's own models/ folder and in the folders listed in
the HYPERSTYLE_MODEL_DIRS environment variable (os.pathsep-separated).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("hyperstyle.nodes")

MODEL_FOLDER = "hyperstyle"
MODEL_EXTENSIONS = {".safetensors", ".pt", ".pth"}   # .pt listed so choosing one gets the "convert it" message
PACK_MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

try:  # ComfyUI present
    import folder_paths  # type: ignore
    import comfy.model_management as model_management  # type: ignore
    import comfy.utils as comfy_utils  # type: ignore
    IN_COMFY = True
except ImportError:
    folder_paths = model_management = comfy_utils = None
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


def resolve_model_path(name: str) -> Path:
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
    import torch
    if IN_COMFY:
        return model_management.get_torch_device()
    from ..hyperstyle_core.devices import resolve_device
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
        import torch
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


def input_directory() -> Path:
    """ComfyUI's input folder (outside ComfyUI: $HYPERSTYLE_INPUT_DIR, default ./input)."""
    if IN_COMFY:
        return Path(folder_paths.get_input_directory())
    return Path(os.environ.get("HYPERSTYLE_INPUT_DIR", "input"))
