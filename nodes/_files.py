"""What each model picker lists: the files of its kind, read from their safetensors headers.

A converted file says what it holds in its header metadata (`format`, and `kind` for converted models), so the
HyperStyle loader lists HyperStyle models only, the direction loader directions only, and so on. Headers are read
once per file version (path, mtime, size), so refreshing the page stays cheap. Original `.pt` files are listed where
choosing one helps: an official checkpoint in the loader of its kind (choosing it says how to convert it), unless its
converted `.safetensors` is already there; an unknown `.pt` in every model loader; GANSpace (`*_pca.pt`) and OpenAI
CLIP (`ViT-B-32.pt`) files, which load as they are, in their pickers. Anything else (README.md, deltas, latents) is
never listed. Which kind an original file is, and which file a picker starts on, is the core's registry of official
files (`hyperstyle_core.original_file_kind`, `default_files`).
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path, PurePosixPath

from ..hyperstyle_core import KINDS, default_files, format_name, original_file_kind, read_safetensors_header
from . import _comfy

log = logging.getLogger("hyperstyle.nodes")

MODEL_KINDS = tuple(KINDS)      # the kinds of converted models (hyperstyle, w_encoder, ..., direction, loss networks)
UNKNOWN_PT = "unknown .pt"      # an original checkpoint we cannot name without unpickling it


def _pt_kind(stem: str) -> str:
    return original_file_kind(stem) or UNKNOWN_PT


@functools.lru_cache(maxsize=4096)
def _safetensors_kind(path: str, mtime_ns: int, size: int) -> str | None:
    """Kind of one version of a safetensors file (mtime and size are in the key so a changed file is read again)."""
    try:
        header = read_safetensors_header(path)
    except (OSError, ValueError) as e:
        log.warning("HyperStyle: %s is left out of the file lists: %s", path, e)
        return None
    meta = header.get("__metadata__") or {}
    found = format_name(meta)
    if found == "checkpoint":
        return meta.get("kind") if meta.get("kind") in MODEL_KINDS else None
    if found is None and "text_projection" in header and any(k.startswith("visual.") for k in header):
        return "clip"       # a plain CLIP state dict saved by another tool: the CLIP reader takes it
    return found


def safetensors_kind(path: Path) -> str | None:
    """What a .safetensors file holds: its model kind if it is a converted model, else its format name ('ganspace',
    'clip', 'styleclip_s_stats', 'weight_deltas', 'latent', ...); None if unreadable or foreign. Cached per file
    version."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _safetensors_kind(str(path), st.st_mtime_ns, st.st_size)


def file_kind(path: Path) -> str | None:
    """What a file in the model folders holds, as the pickers name it (see `safetensors_kind`; UNKNOWN_PT for an
    original checkpoint of no known name), or None if no picker takes it."""
    suffix = path.suffix.lower()
    if suffix in (".pt", ".pth"):
        return _pt_kind(path.stem)
    if suffix == ".npy":
        return "styleclip_channel_directions"       # the official fs3.npy (read with allow_pickle=False)
    return safetensors_kind(path) if suffix == ".safetensors" else None


def _kind_by_name() -> dict[str, str | None]:
    kinds = {}
    for name in _comfy.list_model_files():
        try:
            kinds[name] = file_kind(_comfy.resolve_model_path(name))
        except (FileNotFoundError, ValueError):     # vanished since listing, or a name that leaves the folders
            kinds[name] = None
    return kinds


def files_for(kind: str) -> list[str]:
    """The model-folder files a picker of `kind` lists, sorted (see the module docstring)."""
    kinds = _kind_by_name()
    listed = []
    for name, found in kinds.items():
        converted = str(PurePosixPath(name).with_suffix(".safetensors")) in kinds
        if found == kind and not (kind in MODEL_KINDS and name.lower().endswith((".pt", ".pth")) and converted):
            listed.append(name)
        elif found == UNKNOWN_PT and kind in MODEL_KINDS and not converted:
            listed.append(name)
    return sorted(listed)


def default_for(kind: str, files: list[str]) -> str | None:
    """The official file of `kind` if it is listed (at the top of a model folder, else in a sub-folder)."""
    for wanted in default_files(kind):
        if wanted in files:
            return wanted
        nested = [f for f in files if PurePosixPath(f).name == wanted]
        if nested:
            return nested[0]
    return None


def picker(kind: str, tooltip: str) -> tuple[list[str], dict]:
    """A ComfyUI combo input listing the files of `kind`, starting on the official file when it is there."""
    files = files_for(kind)
    options = {"tooltip": tooltip}
    default = default_for(kind, files)
    if default is not None:
        options["default"] = default
    return (files, options)
