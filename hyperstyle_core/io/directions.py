"""Latent direction files: the `LatentDirection` they hold, reading (converted safetensors or the official `.pt`)
and writing (the same layout the converter gives the official age/smile/pose directions)."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import safe_open

from ..nn.configs import MAX_N_LATENT, MAX_STYLE_DIM
from .formats import read_format_metadata, require_safetensors_suffix, write_safetensors
from .unpickle import read_official_checkpoint


@dataclass(frozen=True)
class LatentDirection:
    """A linear edit direction in W ([1, D], broadcast over W+ entries) or W+ ([1, n_latent, D])."""
    vector: torch.Tensor
    name: str = "direction"

    @property
    def style_dim(self) -> int:
        return self.vector.shape[-1]

    @property
    def n_latent(self) -> int | None:
        return self.vector.shape[1] if self.vector.ndim == 3 else None


def check_direction_shape(shape: Sequence[int], name: str) -> None:
    """Raise ValueError unless `shape` is [1, D] or [1, n_latent, D] within what a generator can have.

    Checked before a tensor is copied, so a crafted shape never allocates memory.
    """
    shape = list(shape)
    if not (len(shape) in (2, 3) and shape[0] == 1):
        raise ValueError(f"{name}: direction has shape {shape}; expected [1, 512] (W) or [1, n_latent, 512] (W+)")
    if not 1 <= shape[-1] <= MAX_STYLE_DIM or (len(shape) == 3 and not 1 <= shape[1] <= MAX_N_LATENT):
        raise ValueError(f"{name}: direction has shape {shape}; a generator has at most {MAX_N_LATENT} W+ entries "
                         f"of at most {MAX_STYLE_DIM} values (official: [1, 512] or [1, 18, 512])")


def direction_from_tensor(t: torch.Tensor, name: str) -> LatentDirection:
    """Validate a direction tensor ([D], [1, D] or [1, n_latent, D] finite floats) and wrap it, as float32 on the
    CPU. Raises ValueError for any other shape, a non-float dtype or NaN / Inf values."""
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError(f"{name}: a direction must be a float tensor [1, 512] or [1, n_latent, 512]")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    check_direction_shape(t.shape, name)
    vector = t.detach().float().cpu().contiguous()
    if not torch.isfinite(vector).all():
        raise ValueError(f"{name}: direction holds NaN or Inf values; it is damaged. Use the original file or fit "
                         f"it again")
    return LatentDirection(vector, name)


def load_direction(path: str | os.PathLike) -> LatentDirection:
    """A direction from a converted `.safetensors` file (kind "direction") or straight from an official `.pt`."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        obj = read_official_checkpoint(path)
        if isinstance(obj, dict):
            tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise ValueError(f"{path.name} is not a direction file (a single tensor [1, 512] or [1, 18, 512])")
            obj = tensors[0]
        return direction_from_tensor(obj, path.stem)
    meta = read_format_metadata(path, "checkpoint", "convert the official direction .pt with `hyperstyle convert`")
    if meta.get("kind") != "direction":
        raise ValueError(f"{path.name} is a converted {meta.get('kind')} file, not a latent direction. Choose a "
                         f"direction file (e.g. age.safetensors).")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        keys = list(f.keys())
        if keys != ["direction"]:
            raise ValueError(f"{path.name} is not a valid direction file (expected one tensor 'direction')")
        return direction_from_tensor(f.get_tensor("direction"), path.stem)


def save_direction(direction: LatentDirection, path: str | os.PathLike) -> Path:
    """Write a direction as `convert` writes official ones; `load_direction` / `load(expect="direction")` read it.

    Args:
        direction: vector [1, D] or [1, n_latent, D].
        path: target `.safetensors` file (written atomically).
    Returns:
        the written path.
    """
    path = require_safetensors_suffix(path, "save_direction")
    if not isinstance(direction, LatentDirection):
        raise ValueError(f"save_direction takes a LatentDirection, got {type(direction).__name__}")
    vector = direction_from_tensor(direction.vector, direction.name).vector
    # A fitted direction has no source file: the digest is of its float32 values.
    digest = hashlib.sha256(vector.numpy().tobytes()).hexdigest()
    return write_safetensors(path, {"direction": vector}, "checkpoint", {
        "kind": "direction", "config": json.dumps({"shape": list(vector.shape)}), "opts": "{}",
        "source_name": direction.name, "source_sha256": digest})
