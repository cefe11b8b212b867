"""Latent editing as pure functions on codes (InterFaceGAN directions for now).

An edit changes only the latent; render it with `generate(generator, edited, deltas)` so the image's weight deltas
stay applied, as the official FaceEditor does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch


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


def direction_from_tensor(t: torch.Tensor, name: str) -> LatentDirection:
    if not isinstance(t, torch.Tensor) or not t.is_floating_point():
        raise ValueError(f"{name}: a direction must be a float tensor [1, 512] or [1, n_latent, 512]")
    if t.ndim == 1:
        t = t.unsqueeze(0)
    if not ((t.ndim == 2 and t.shape[0] == 1) or (t.ndim == 3 and t.shape[0] == 1)):
        raise ValueError(f"{name}: direction has shape {list(t.shape)}; expected [1, 512] (W) or [1, n_latent, 512] (W+)")
    return LatentDirection(t.detach().float().cpu().contiguous(), name)


def load_direction(path: str | os.PathLike) -> LatentDirection:
    """An InterFaceGAN direction from our converted safetensors, or straight from an official `.pt` (safe loader)."""
    path = Path(path)
    if path.suffix in (".pt", ".pth"):
        from .checkpoints import read_official_checkpoint
        obj = read_official_checkpoint(path)
        if isinstance(obj, dict):
            tensors = [v for v in obj.values() if isinstance(v, torch.Tensor)]
            if len(tensors) != 1:
                raise ValueError(f"{path.name} is not a direction file (a single tensor [1, 512] or [1, 18, 512])")
            obj = tensors[0]
        return direction_from_tensor(obj, path.stem)
    from .checkpoints import load
    loaded = load(path, device="cpu", expect="direction")
    return loaded


def apply_direction(latent: torch.Tensor, direction: LatentDirection, factor: float) -> torch.Tensor:
    """latent + factor * direction.

    Args:
        latent: W [B, D] or W+ [B, n_latent, D].
        direction: from load_direction.
        factor: edit strength (official examples use -5..5).
    Returns:
        the edited latent, same shape as `latent`.
    """
    v = direction.vector.to(device=latent.device, dtype=latent.dtype)
    if latent.shape[-1] != v.shape[-1]:
        raise ValueError(f"direction {direction.name!r} has dim {v.shape[-1]}, latent has {latent.shape[-1]}")
    if v.ndim == 3:
        if latent.ndim != 3 or latent.shape[1] != v.shape[1]:
            raise ValueError(f"direction {direction.name!r} is a W+ direction for {v.shape[1]} style layers but the "
                             f"latent has shape {list(latent.shape)}; use it with a {2 ** ((v.shape[1] + 2) // 2)}px "
                             f"model's latents")
        return latent + factor * v
    if latent.ndim == 3:
        return latent + factor * v.unsqueeze(1)
    return latent + factor * v


def sweep_direction(latent: torch.Tensor, direction: LatentDirection, factors: list[float]) -> torch.Tensor:
    """Latents for several factors: [B, ...] -> [B * len(factors), ...], sample-major (all factors of sample 0 first)."""
    edits = torch.stack([apply_direction(latent, direction, f) for f in factors], dim=1)
    return edits.reshape(-1, *latent.shape[1:])
