"""The one file-format layer: every safetensors file the project writes carries `format` and `version` metadata.

Tags live in one namespace, `hyperstyle.<name>` (see `FORMATS`); the version key is `version`. Files written by
release 0.1 used a second prefix (`hyperstyle_core.checkpoint`, `hyperstyle_core.ganspace`) and, for those two and
converted directions, the key `format_version`: `read_format` still accepts them (`LEGACY_TAGS`), so every file an
earlier release wrote keeps loading.

Files are written here with sorted metadata and tensor names, so the same content always gives the same bytes
(safetensors' own writer orders metadata by a per-process hash seed).
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Mapping

import torch

from .files import atomic_path

TAG_KEY = "format"
VERSION_KEY = "version"
NAMESPACE = "hyperstyle"
LEGACY_VERSION_KEY = "format_version"      # release 0.1: checkpoints, directions, GANSpace

# name -> (current version, what the file holds: used in messages)
FORMATS: dict[str, tuple[int, str]] = {
    "checkpoint": (1, "converted model"),
    "weight_deltas": (1, "weight-deltas file"),
    "latent": (1, "latent file"),
    "ganspace": (1, "GANSpace file"),
    "styleclip_s_stats": (1, "StyleCLIP S statistics file"),
    "styleclip_channel_directions": (1, "StyleCLIP channel directions file"),
    "clip": (1, "CLIP weights file"),
    "alignment": (1, "alignment record"),
    "training_state": (1, "training state file"),
}
LEGACY_TAGS = {"hyperstyle_core.checkpoint": "checkpoint", "hyperstyle_core.ganspace": "ganspace"}

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
           torch.bool: "BOOL"}


def tag(name: str) -> str:
    """The `format` value of a format name: 'latent' -> 'hyperstyle.latent'."""
    if name not in FORMATS:
        raise KeyError(f"unknown file format {name!r}; known: {', '.join(FORMATS)}")
    return f"{NAMESPACE}.{name}"


def format_metadata(name: str, extra: Mapping[str, object] | None = None) -> dict[str, str]:
    """Metadata of a new file of format `name`: the tag, the current version, then `extra` as strings."""
    meta = {TAG_KEY: tag(name), VERSION_KEY: str(FORMATS[name][0])}
    for key, value in (extra or {}).items():
        if key in (TAG_KEY, VERSION_KEY, LEGACY_VERSION_KEY):
            raise ValueError(f"metadata key {key!r} is reserved for the file format")
        meta[key] = str(value)
    return meta


def format_name(metadata: Mapping[str, str]) -> str | None:
    """The format name of a file's metadata ('latent', 'checkpoint', ...), legacy tags included; None if foreign."""
    value = metadata.get(TAG_KEY)
    if not isinstance(value, str):
        return None
    if value in LEGACY_TAGS:
        return LEGACY_TAGS[value]
    prefix, _, name = value.partition(".")
    return name if prefix == NAMESPACE and name in FORMATS else None


def format_version(metadata: Mapping[str, str]) -> str | None:
    """The version string of a file's metadata (`version`, or release 0.1's `format_version`)."""
    value = metadata.get(VERSION_KEY, metadata.get(LEGACY_VERSION_KEY))
    return value if isinstance(value, str) else None


def check_format(metadata: Mapping[str, str], name: str, file_name: str, hint: str) -> None:
    """Raise ValueError unless the metadata says format `name` in a version this release reads.

    Args:
        metadata: the file's safetensors metadata (or a JSON record's top level).
        name: the expected format name (a key of FORMATS).
        file_name: shown in the message.
        hint: what the user should do instead, e.g. "write one with save_latent".
    """
    found = format_name(metadata)
    what = _a(FORMATS[name][1])
    if found != name:
        described = _a(FORMATS[found][1]) if found else f"format {metadata.get(TAG_KEY)!r}"
        if found == "checkpoint" and "kind" in metadata:
            described += f" of kind {metadata['kind']!r}"
        raise ValueError(f"{file_name} is not {what} (it is {described}); {hint}")
    version = format_version(metadata)
    current = FORMATS[name][0]
    if version is None or not version.isdigit() or int(version) > current:
        raise ValueError(f"{file_name} is {what} of version {version!r}; this release reads versions up to "
                         f"{current}. Update hyperstyle_core, or {hint}")


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"


# --------------------------------------------------------------------------------------------- safetensors files

def read_safetensors_header(path: str | os.PathLike) -> dict:
    """Parse and validate a safetensors header (tensor offsets must lie inside the file).

    Raises FileNotFoundError for a missing file and ValueError for anything that is not a complete safetensors file.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. Check the path, or convert the official checkpoint with "
                                f"`python -m hyperstyle_core convert CHECKPOINT.pt --out models/`.")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, expected a .safetensors file")
    size = path.stat().st_size
    hint = ("Re-run `python -m hyperstyle_core convert` on the official .pt file (or download it again) "
            "to rebuild it.")
    if path.suffix.lower() in (".pt", ".pth", ".ckpt", ".pkl"):
        raise ValueError(f"{path.name} is an original PyTorch checkpoint; it is never unpickled at run time. "
                         f"Convert it once with `python -m hyperstyle_core convert {path.name} --out models/` "
                         f"and load the .safetensors file it writes.")
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path.name} is not a safetensors file: only {size} bytes. {hint}")
        (n,) = struct.unpack("<Q", head)
        if n == 0 or n > SAFETENSORS_MAX_HEADER or 8 + n > size:
            if head[:2] == b"PK" or head[:1] == b"\x80":
                raise ValueError(f"{path.name} looks like a PyTorch pickle/zip checkpoint despite its name. Convert "
                                 f"it with `python -m hyperstyle_core convert` first.")
            raise ValueError(f"{path.name} is not a valid safetensors file (header length {n}, file size {size}): "
                             f"it is corrupt or truncated. {hint}")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path.name} has a corrupt safetensors header ({e}). {hint}") from None
        except RecursionError:      # crafted: JSON nested thousands of levels deep
            raise ValueError(f"{path.name} has a corrupt safetensors header (nested too deeply). {hint}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} has a corrupt safetensors header. {hint}")
    meta = header.get("__metadata__")
    # safetensors metadata is a map of strings; anything else would reach the readers as the wrong type.
    if meta is not None and not (isinstance(meta, dict)
                                 and all(isinstance(v, str) for v in meta.values())):
        raise ValueError(f"{path.name} has corrupt safetensors metadata (it must map names to strings). {hint}")
    data_size = size - 8 - n
    end = 0
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (TypeError, KeyError, IndexError, ValueError):
            raise ValueError(f"{path.name} has a corrupt entry for tensor {key!r}. {hint}") from None
    if end > data_size:
        raise ValueError(f"{path.name} is truncated: its header describes {end} bytes of tensor data but only "
                         f"{data_size} are present. {hint}")
    return header


def read_safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` map of a safetensors file (empty if it has none); the header is validated."""
    return read_safetensors_header(path).get("__metadata__") or {}


def read_format_metadata(path: str | os.PathLike, name: str, hint: str) -> dict[str, str]:
    """Metadata of a file that must be of format `name` (see `check_format`)."""
    path = Path(path)
    meta = read_safetensors_metadata(path)
    check_format(meta, name, path.name, hint)
    return meta


def require_safetensors_suffix(path: str | os.PathLike, writer: str) -> Path:
    """`path` as a Path if it ends in .safetensors; otherwise a ValueError naming the writer and the right name."""
    path = Path(path)
    if path.suffix.lower() != ".safetensors":
        raise ValueError(f"{writer} writes safetensors; name the file '{path.stem}.safetensors' instead of "
                         f"'{path.name}'")
    return path


def write_safetensors(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor], name: str,
                      metadata: Mapping[str, object] | None = None) -> Path:
    """Write `tensors` as a safetensors file of format `name`, atomically and deterministically.

    Args:
        path: destination; written to a temp file beside it and renamed, so a failure leaves nothing behind.
        tensors: name -> tensor (moved to the CPU; dtype kept).
        name: format name (a key of FORMATS); the tag and version are added to the metadata.
        metadata: further string metadata.
    Returns:
        The written path.
    """
    meta = format_metadata(name, metadata)
    entries, blobs, offset = {}, [], 0
    for key in sorted(tensors):
        t = tensors[key]
        if not isinstance(t, torch.Tensor) or t.dtype not in _DTYPES:
            raise ValueError(f"tensor {key!r} cannot be stored ({type(t).__name__} {getattr(t, 'dtype', '')})")
        t = t.detach().to("cpu").contiguous()
        n_bytes = t.numel() * t.element_size()
        entries[key] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n_bytes]}
        blobs.append(t)
        offset += n_bytes
    header = json.dumps({"__metadata__": dict(sorted(meta.items())), **entries}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)       # the data section starts 8-byte aligned, as safetensors writes it
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for t in blobs:
                if t.numel():
                    f.write(memoryview(t.view(-1).view(torch.uint8).numpy()))
    return path
