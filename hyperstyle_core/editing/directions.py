"""Latent edits along a direction, as pure functions on codes (InterFaceGAN age / smile / pose and fitted ones).

An edit changes only the latent; render it with `generate(generator, edited, deltas)` so the image's weight deltas
stay applied, as the official FaceEditor does.
"""
from __future__ import annotations

import torch

from ..io.directions import LatentDirection, direction_from_tensor, load_direction, save_direction

__all__ = ["LatentDirection", "direction_from_tensor", "load_direction", "save_direction", "apply_direction",
           "sweep_direction", "sweep_factors"]


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


def sweep_factors(start: float, end: float, steps: int) -> list[float]:
    """`steps` evenly spaced factors from exactly `start` to exactly `end` ([start] for one step)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a whole number of at least 1, got {steps!r}")
    if steps == 1:
        return [float(start)]
    return [float(start + (end - start) * i / (steps - 1)) for i in range(steps - 1)] + [float(end)]


def sweep_direction(latent: torch.Tensor, direction: LatentDirection, factors: list[float]) -> torch.Tensor:
    """Latents for several factors: [B, ...] -> [B * len(factors), ...], sample-major.

    All factors of sample 0 come first.
    """
    edits = torch.stack([apply_direction(latent, direction, f) for f in factors], dim=1)
    return edits.reshape(-1, *latent.shape[1:])
