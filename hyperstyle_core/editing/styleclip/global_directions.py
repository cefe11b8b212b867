"""StyleCLIP global directions in S (official `StyleCLIPGlobalDirection`): text direction -> S offsets.

Channel relevance `r_c = delta_i_c @ delta_i` with `delta_i_c` [n_channels, D] the per-channel CLIP image-space
directions of the generator ("fs3"); channels with |r_c| < beta are zeroed, the rest divided by max |r_c|
(`threshold_relevance`). `features_channels_to_s`: the channel values, times each channel's S standard deviation,
fill the first 11 non-ToRGB layers (official quirk: later conv layers and all ToRGB layers get zeros). The edit is
`s + alpha * direction` (`apply_global_direction`).
"""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import torch

from .layout import StyleStd, stats_by_layer, styleclip_edit_layers

log = logging.getLogger(__name__)


def channel_relevance(delta_i_c: torch.Tensor, delta_i: torch.Tensor) -> torch.Tensor:
    """r_c = delta_i_c @ delta_i: how much each S channel moves CLIP image space along the text direction.

    Args:
        delta_i_c: [n_channels, D] per-channel image-space directions (official fs3.npy rows, or
            `compute_channel_directions`).
        delta_i: [D] text direction.
    Returns:
        [n_channels] float32.
    """
    if delta_i_c.ndim != 2:
        raise ValueError(f"delta_i_c has shape {list(delta_i_c.shape)}; expected [n_channels, embed_dim]")
    if delta_i.ndim != 1 or delta_i.shape[0] != delta_i_c.shape[1]:
        raise ValueError(f"text direction has shape {list(delta_i.shape)} but the channel directions are "
                         f"{delta_i_c.shape[1]}-dimensional: use the CLIP model the channel directions were "
                         f"computed with (ViT-B/32 for the official fs3.npy)")
    return torch.matmul(delta_i_c.float(), delta_i.to(delta_i_c.device).float())


def threshold_relevance(r_c: torch.Tensor, beta: float) -> torch.Tensor:
    """Official disentanglement threshold: zero channels with |r_c| < beta, divide the rest by max |r_c|.

    Args:
        r_c: [n_channels] relevance.
        beta: threshold in [0, 1); the official UI sweeps 0.08-0.16, edit.py 0.11-0.16. Larger = fewer channels.
    Returns:
        [n_channels] in [-1, 1] (all zeros when no channel reaches beta).
    """
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"beta is {beta}; it is a cosine threshold in [0, 1) (official edits use 0.11-0.16)")
    delta_s = r_c.clone()
    delta_s[torch.abs(r_c) < beta] = 0
    max_value = torch.abs(delta_s).max()
    if max_value > 0:
        delta_s /= max_value
    else:
        log.warning("StyleCLIP: no channel has |relevance| >= beta=%s (max %.4f); the direction is zero. "
                    "Lower beta.", beta, torch.abs(r_c).max().item())
    return delta_s


def channels_to_style_direction(delta_s: torch.Tensor, s_std: StyleStd,
                                edit_layers: Sequence[str] | None = None,
                                layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Spread channel values over S layers, scaled by each channel's std (official `features_channels_to_s`).

    Rows of `delta_s` are consumed in `edit_layers` order; layers outside `edit_layers` get zeros. Extra rows
    (official: fs3.npy's 6048 rows vs 5376 used) are ignored, as upstream.

    Args:
        delta_s: [n_channels] channel values (after `threshold_relevance`).
        s_std: per-layer S standard deviations: an official-order list ([dim_c] arrays, e.g. S_mean_std's stds) or
            {layer: [dim]}.
        edit_layers: layers that receive values; default `styleclip_edit_layers(layers of s_std)` (first 11
            non-ToRGB layers).
        layer_names: names of a list `s_std`'s entries; default `official_layer_names(len(s_std))`.
    Returns:
        {layer: [dim] float32} for every layer of `s_std`, in its order.
    """
    std = stats_by_layer(s_std, layer_names, "s_std")
    names = list(std)
    edit = styleclip_edit_layers(names) if edit_layers is None else list(edit_layers)
    unknown = [n for n in edit if n not in std]
    if unknown:
        raise ValueError(f"edit layers {unknown} are not in the S statistics' layers {names[:3]}...")
    needed = sum(std[n].numel() for n in edit)
    if delta_s.ndim != 1 or delta_s.shape[0] < needed:
        raise ValueError(f"channel values have shape {list(delta_s.shape)} but the edit layers "
                         f"{edit[0]}..{edit[-1]} need {needed} channels; the channel directions (delta_i_c) do not "
                         f"fit these S statistics")
    out, start = {}, 0
    edit_set = set(edit)
    offsets = {}
    for n in edit:
        offsets[n] = start
        start += std[n].numel()
    for n in names:
        s = std[n].to(delta_s.device)
        if n in edit_set:
            out[n] = delta_s[offsets[n]:offsets[n] + s.numel()] * s
        else:
            out[n] = torch.zeros(s.numel(), dtype=delta_s.dtype, device=delta_s.device)
    return out


def global_direction(delta_i: torch.Tensor, delta_i_c: torch.Tensor, s_std: StyleStd, beta: float,
                     edit_layers: Sequence[str] | None = None,
                     layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """StyleCLIP global direction in S (official `StyleCLIPGlobalDirection.get_delta_s`).

    Args:
        delta_i: [D] text direction (`text_direction`).
        delta_i_c: [n_channels, D] per-channel image directions; rows follow `edit_layers` (official fs3.npy, or
            `compute_channel_directions`).
        s_std: per-layer S standard deviations, official-order list or {layer: [dim]}.
        beta: disentanglement threshold in [0, 1).
        edit_layers: layers that can change (default: the official first 11 non-ToRGB layers).
        layer_names: names of a list `s_std`'s entries (default from its length).
    Returns:
        {layer: [dim] float32} offsets for every layer of `s_std`; add `alpha *` them with `apply_global_direction`.
    """
    r_c = channel_relevance(delta_i_c, delta_i)
    return channels_to_style_direction(threshold_relevance(r_c, beta), s_std, edit_layers, layer_names)


def apply_global_direction(style_codes: Mapping[str, torch.Tensor], direction: Mapping[str, torch.Tensor],
                           alpha: float | torch.Tensor) -> dict[str, torch.Tensor]:
    """`s + alpha * direction` per layer; the input codes are not modified.

    Direction layers the generator lacks (a 1024px direction on a 256px generator: upstream zips the lists and
    drops the tail) must be all zero. Layers without a direction entry are copied unchanged.

    Args:
        style_codes: {layer: [B, dim]} S codes (`generator.style_codes(latent)`).
        direction: {layer: [dim]} (`global_direction`).
        alpha: edit strength (official sweeps -5..5), a float or a [B] tensor (one strength per sample).
    Returns:
        {layer: [B, dim]} edited codes, for `render_style_codes`.
    """
    for name, d in direction.items():
        if name not in style_codes and bool(torch.any(d != 0)):
            raise ValueError(f"the direction changes layer {name!r}, which these style codes do not have "
                             f"({len(style_codes)} layers); compute the direction from S statistics and channel "
                             f"directions of this generator")
    out = {}
    for name, s in style_codes.items():
        d = direction.get(name)
        if d is None:
            out[name] = s.clone()
            continue
        if d.ndim != 1 or d.shape[0] != s.shape[-1]:
            raise ValueError(f"direction for layer {name!r} has shape {list(d.shape)} but the style code has "
                             f"{s.shape[-1]} channels: the direction was made for another generator")
        d = d.to(device=s.device, dtype=s.dtype)
        if isinstance(alpha, torch.Tensor) and alpha.ndim > 0:
            if alpha.shape != (s.shape[0],):
                raise ValueError(f"alpha has shape {list(alpha.shape)}; expected a float or one value per sample "
                                 f"[{s.shape[0]}]")
            out[name] = s + alpha.to(device=s.device, dtype=s.dtype)[:, None] * d
        else:
            out[name] = s + float(alpha) * d
    return out


__all__ = ["channel_relevance", "threshold_relevance", "channels_to_style_direction", "global_direction",
           "apply_global_direction"]
