"""Latent files: W/W+ codes as safetensors with a format tag (written by invert/run and the Save Latent node)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import torch

from .io_utils import atomic_path, read_safetensors_metadata

FORMAT = "hyperstyle.latent"
FORMAT_VERSION = "1"


def save_latent(path: str | os.PathLike, latent: torch.Tensor, extra_tensors: Mapping[str, torch.Tensor] | None = None,
                extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `latent` [B, n_latent, D] (plus optional named tensors) atomically."""
    from safetensors.torch import save_file

    tensors = {"latent": latent.detach().float().cpu().contiguous()}
    tensors.update({k: v.detach().float().cpu().contiguous() for k, v in (extra_tensors or {}).items()})
    metadata = {"format": FORMAT, "version": FORMAT_VERSION}
    metadata.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def load_latent_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a latent file ('latent' and any extras). Raises ValueError for other files."""
    from safetensors import safe_open

    path = Path(path)
    meta = read_safetensors_metadata(path)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not a latent file (format {meta.get('format')!r}); use a _latent.safetensors "
                         f"file written by invert / run or HyperStyle Save Latent")
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def load_latent(path: str | os.PathLike) -> torch.Tensor:
    """The codes [B, n_latent, D] of a latent file."""
    return load_latent_file(path)["latent"]
