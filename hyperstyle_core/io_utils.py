"""File helpers: atomic writes, hashing, safetensors header checks with errors that say what to do."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Iterator

SAFETENSORS_MAX_HEADER = 100 * 1024 * 1024
_UMASK = os.umask(0o022)    # read once at import (os.umask can only be read by setting it)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path`; rename it onto `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_UMASK)     # mkstemp (and some writers) make 0600; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


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
    if not isinstance(header, dict):
        raise ValueError(f"{path.name} has a corrupt safetensors header. {hint}")
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
    return read_safetensors_header(path).get("__metadata__") or {}
