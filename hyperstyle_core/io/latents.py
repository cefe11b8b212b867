"""Latent files: W/W+ codes as safetensors with a format tag (written by invert/run and the Save Latent node)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open

from .formats import read_format_metadata, write_safetensors



def save_latent(path: str | os.PathLike, latent: torch.Tensor, extra_tensors: Mapping[str, torch.Tensor] | None = None,
                extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `latent` [B, n_latent, D] (plus optional named tensors) atomically."""
    tensors = {"latent": latent.detach().float().cpu()}
    tensors.update({k: v.detach().float().cpu() for k, v in (extra_tensors or {}).items()})
    return write_safetensors(path, tensors, "latent", extra_metadata)


def load_latent_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a latent file ('latent' and any extras). Raises ValueError for other files."""
    path = Path(path)
    read_format_metadata(path, "latent", "use a _latent.safetensors file written by invert / run or HyperStyle "
                                         "Save Latent")
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def load_latent(path: str | os.PathLike) -> torch.Tensor:
    """The codes [B, n_latent, D] of a latent file."""
    return load_latent_file(path)["latent"]
