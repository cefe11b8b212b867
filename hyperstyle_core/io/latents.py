"""Latent files: W/W+ codes as safetensors with a format tag (written by invert/run and the Save Latent node)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open

from .formats import read_format_metadata, write_safetensors

_HINT = "use a _latent.safetensors file written by invert / run or HyperStyle Save Latent"


def save_latent(path: str | os.PathLike, latent: torch.Tensor, extra_tensors: Mapping[str, torch.Tensor] | None = None,
                extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `latent` [B, n_latent, D] (plus optional named tensors) atomically."""
    tensors = {"latent": latent.detach().float().cpu()}
    tensors.update({k: v.detach().float().cpu() for k, v in (extra_tensors or {}).items()})
    return write_safetensors(path, tensors, "latent", extra_metadata)


def load_latent_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a latent file ('latent' and any extras).

    Raises:
        ValueError for other files, a file without a 'latent' tensor, and non-float or non-finite (NaN / Inf) codes.
    """
    path = Path(path)
    read_format_metadata(path, "latent", _HINT)
    with safe_open(str(path), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if "latent" not in tensors:
        raise ValueError(f"{path.name} has no 'latent' tensor (it holds {sorted(tensors)[:8]}); {_HINT}")
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise ValueError(f"{path.name}: tensor {name!r} has dtype {t.dtype}; latent codes are floats. {_HINT}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{path.name}: tensor {name!r} holds NaN or Inf values; the file is damaged. Invert "
                             f"the image again")
    return tensors


def load_latent(path: str | os.PathLike) -> torch.Tensor:
    """The codes [B, n_latent, D] of a latent file."""
    return load_latent_file(path)["latent"]
