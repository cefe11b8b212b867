"""The StyleCLIP global-direction edit of inverted images, as HyperStyle's editing/styleclip/edit.py runs it.

1. Text direction `delta_i` from the neutral and target texts (`text_direction`).
2. Global direction in S from the channel directions and S statistics (`global_direction`, threshold beta).
3. Per sample: the S codes of the inverted latent, `s + alpha * direction`, re-rendered from S with the sample's
   HyperStyle weight deltas (`render_style_codes`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from ...deltas import WeightDeltas
from ...nn.stylegan2 import Generator
from .global_directions import apply_global_direction, global_direction
from .layout import StyleStd, render_style_codes
from .text import text_direction


def styleclip_edit(generator: Generator, latent: torch.Tensor, clip_model: Any, s_std: StyleStd,
                   delta_i_c: torch.Tensor, neutral_text: str, target_text: str, templates: Sequence[str],
                   alpha: float, beta: float, deltas: WeightDeltas | None = None,
                   progress: Callable[[], Any] | None = None, *,
                   tokenize: Callable[[list[str]], Any] | None = None) -> torch.Tensor:
    """Edit inverted images by text with a StyleCLIP global direction, keeping their weight deltas.

    Args:
        generator: the StyleGAN2 generator of the inversion.
        latent: [B, n_latent, style_dim] (or [B, style_dim]) inverted codes; sample i is edited as latent[i:i+1].
        clip_model: a CLIP model (`encode_text`), see `load_clip`; use the one `delta_i_c` was computed with.
        s_std: per-layer S standard deviations: an official-order list of [dim_c] arrays (S_mean_std's stds, from
            `load_s_stats` / `read_s_mean_std`) or {layer: [dim]}.
        delta_i_c: [n_channels, D] per-channel CLIP image directions (official fs3.npy, or
            `compute_channel_directions`), rows in the official layout.
        neutral_text: what the image is now, e.g. "face".
        target_text: what it should become, e.g. "smiling face".
        templates: prompt templates with a `{}` placeholder (official: the 79 of templates.txt).
        alpha: edit strength (official sweeps -5..5).
        beta: disentanglement threshold in [0, 1) (official 0.11-0.16).
        deltas: WeightDeltas of batch B (one set per sample, picked with `deltas.sample(i)`) or 1 (shared);
            None renders with the generator's own weights.
        progress: called with no arguments once per sample after it is rendered (may raise to stop).
        tokenize: prompt tokenizer for `clip_model`; None = `clip.tokenize`.
    Returns:
        [B, 3, H, W] edited images, roughly in [-1, 1], on the CPU in the generator's dtype.
    """
    delta_i = text_direction(clip_model, tokenize, neutral_text, target_text, templates)
    direction = global_direction(delta_i.float().cpu(), delta_i_c, s_std, beta)
    device, dtype = generator.device, generator.dtype
    direction = {k: v.to(device, dtype) for k, v in direction.items()}
    out = []
    for i in range(latent.shape[0]):
        with torch.no_grad():
            codes = generator.style_codes(generator.broadcast_latent(latent[i:i + 1].to(device, dtype)))
            edited = apply_global_direction(codes, direction, alpha)
            sample_deltas = None if deltas is None else deltas.sample(i)
            out.append(render_style_codes(generator, edited, sample_deltas).cpu())
        if progress is not None:
            progress()
    return torch.cat(out)


__all__ = ["styleclip_edit"]
