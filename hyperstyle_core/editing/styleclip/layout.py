"""Style-space (S) layout: official S-list order, the layers StyleCLIP edits, and rendering from S codes.

Official S lists are indexed like the official `weights_deltas` list (conv1, to_rgb1, then per block convs[2b],
convs[2b+1], to_rgbs[b]) and hold [B, 1, dim, 1, 1] tensors; `official_layer_names` gives the names of that order
and `style_codes_to_official` / `official_to_style_codes` convert. Here S codes are dicts {layer name: [B, dim]}.
"""
from __future__ import annotations

import json
from typing import Mapping, Sequence, Union

import numpy as np
import torch

from ...nn.engine import InferenceEngine
from ...nn.stylegan2 import Generator

# features_channels_to_s fills STYLESPACE_INDICES_WITHOUT_TORGB[:11]: the non-ToRGB layers up to 128px (StyleCLIP's
# SingleChannel.py computes channel directions only there).
OFFICIAL_EDIT_LAYER_COUNT = 11

# Per-layer S statistics: an official-order list of [dim_c] arrays, or {layer name: [dim]}.
StyleStd = Union[Sequence[Union[np.ndarray, torch.Tensor]], Mapping[str, Union[np.ndarray, torch.Tensor]]]


def official_layer_names(n_layers: int) -> list[str]:
    """Generator layer names of an official S list (or S_mean_std) with `n_layers` entries, in index order.

    An official list has 3*log2(size) - 4 entries: 20 at 256px, 23 at 512px, 26 at 1024px (S_mean_std of FFHQ).
    """
    log_size, rem = divmod(n_layers + 4, 3)
    if rem or log_size < 3:
        raise ValueError(f"an official S list has 3*log2(size)-4 entries (20 at 256px, 23 at 512px, 26 at 1024px); "
                         f"got {n_layers}")
    names = ["conv1", "to_rgb1"]
    for b in range(log_size - 2):
        names += [f"convs.{2 * b}", f"convs.{2 * b + 1}", f"to_rgbs.{b}"]
    return names


def is_torgb_layer(name: str) -> bool:
    """True for ToRGB layers (`to_rgb1`, `to_rgbs.<b>`), whose S codes StyleCLIP never edits."""
    return name.startswith("to_rgb")


def styleclip_edit_layers(layer_names: Sequence[str], count: int | None = OFFICIAL_EDIT_LAYER_COUNT) -> list[str]:
    """The layers a global direction fills: the first `count` non-ToRGB layers (official: 11; None = all)."""
    names = [n for n in layer_names if not is_torgb_layer(n)]
    return names if count is None else names[:count]


def channel_layout(generator: Generator, layers: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """The row layout of channel directions (`delta_i_c`, StyleCLIP's fs3) for `generator`: (layer name, its S
    channel count) per layer, in row order.

    Args:
        generator: the generator whose style channels get rows.
        layers: the layers that get rows, in order; default `styleclip_edit_layers(generator.layer_names)` (the
            official first 11 non-ToRGB layers, the layout of fs3.npy and what `global_direction` expects).
    Raises:
        ValueError when `layers` is empty or names a layer the generator lacks.
    """
    names = styleclip_edit_layers(generator.layer_names) if layers is None else list(layers)
    unknown = [n for n in names if n not in generator.layer_names]
    if unknown or not names:
        raise ValueError(f"layers {unknown or names} are not layers of this generator ({generator.layer_names})")
    channels = {name: in_channels for name, _, in_channels, _ in generator.layer_table}
    return [(name, channels[name]) for name in names]


def style_codes_to_official(style_codes: Mapping[str, torch.Tensor],
                            layer_names: Sequence[str]) -> list[torch.Tensor]:
    """{layer: [B, dim]} -> the official S list, one [B, 1, dim, 1, 1] tensor per layer in `layer_names` order."""
    missing = [n for n in layer_names if n not in style_codes]
    if missing:
        raise ValueError(f"style codes lack layers {missing[:3]}; expected every layer of {list(layer_names)[:3]}...")
    out = []
    for name in layer_names:
        s = style_codes[name]
        if s.ndim != 2:
            raise ValueError(f"style code {name!r} has shape {list(s.shape)}; expected [B, dim]")
        out.append(s.reshape(s.shape[0], 1, s.shape[1], 1, 1))
    return out


def official_to_style_codes(s_list: Sequence[torch.Tensor],
                            layer_names: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Official S list ([B, 1, dim, 1, 1], [B, dim] or [dim] entries) -> {layer: [B, dim]}.

    `layer_names` defaults to `official_layer_names(len(s_list))`.
    """
    names = official_layer_names(len(s_list)) if layer_names is None else list(layer_names)
    if len(names) != len(s_list):
        raise ValueError(f"{len(s_list)} S entries but {len(names)} layer names")
    out = {}
    for name, s in zip(names, s_list):
        s = torch.as_tensor(s)
        if s.ndim == 5 and s.shape[1] == 1 and s.shape[3:] == (1, 1):
            s = s.reshape(s.shape[0], s.shape[2])
        elif s.ndim == 1:
            s = s.unsqueeze(0)
        elif s.ndim != 2:
            raise ValueError(f"S entry {name!r} has shape {list(s.shape)}; expected [B, 1, dim, 1, 1], [B, dim] "
                             f"or [dim]")
        out[name] = s
    return out


def stats_by_layer(stats: StyleStd, names: Sequence[str] | None, what: str) -> dict[str, torch.Tensor]:
    """Official-order list (or {layer: values}) -> {layer: float32 [dim] tensor}.

    A list's entries are named `names`, default `official_layer_names(len(stats))`; `what` names it in errors.
    """
    if isinstance(stats, Mapping):
        items = list(stats.items())
    else:
        stats = list(stats)
        layer_names = official_layer_names(len(stats)) if names is None else list(names)
        if len(layer_names) != len(stats):
            raise ValueError(f"{what} has {len(stats)} layers but {len(layer_names)} layer names were given")
        items = list(zip(layer_names, stats))
    out = {}
    for name, v in items:
        t = torch.from_numpy(np.asarray(v)) if not isinstance(v, torch.Tensor) else v
        if t.ndim != 1:
            raise ValueError(f"{what}[{name!r}] has shape {list(t.shape)}; expected [channels]")
        out[name] = t.float()
    return out


def read_layer_table(metadata: Mapping[str, str], file_name: str, hint: str) -> list[tuple[str, int]]:
    """The `layers` metadata of an S statistics or channel directions file: [(layer name, channels), ...].

    Raises:
        ValueError naming the file when the entry is missing, not JSON, or not a list of [name, channels] pairs.
    """
    try:
        table = json.loads(metadata["layers"])
    except (KeyError, json.JSONDecodeError, RecursionError):
        raise ValueError(f"{file_name} has no readable 'layers' metadata; {hint}") from None
    if not isinstance(table, list) or not all(
            isinstance(e, list) and len(e) == 2 and isinstance(e[0], str) and isinstance(e[1], int)
            and not isinstance(e[1], bool) and e[1] > 0 for e in table):
        raise ValueError(f"{file_name}: its 'layers' metadata is not a list of [layer name, channels] pairs; {hint}")
    return [(name, size) for name, size in table]


def render_style_codes(generator: Generator, style_codes: Mapping[str, torch.Tensor],
                       deltas: Mapping[str, torch.Tensor] | None = None,
                       randomize_noise: bool = False) -> torch.Tensor:
    """Render S codes (modulation skipped, official `input_is_stylespace=True`) with optional weight deltas.

    Args:
        generator: the generator the codes and deltas belong to.
        style_codes: {layer: [B, dim]} for every layer of `generator.layer_names`.
        deltas: WeightDeltas (or a plain {layer: [B or 1, out, in, k, k]} mapping) of batch B or 1.
        randomize_noise: fresh noise instead of the stored noise buffers (official edits use the buffers).
    Returns:
        [B, 3, H, W], roughly in [-1, 1] (the generator's output crop applied, as `generate` does).
    """
    codes = {n: style_codes[n].to(device=generator.device, dtype=generator.dtype) for n in generator.layer_names
             if n in style_codes}
    delta_map = None
    if deltas is not None:
        check = getattr(deltas, "check_compatible", None)
        if check is not None:
            check(generator)
        batch = next(iter(codes.values())).shape[0] if codes else 0
        sizes = {t.shape[0] for t in deltas.values() if t.ndim == 5}
        if sizes - {1, batch}:
            raise ValueError(f"deltas have batch {sorted(sizes)} but there are {batch} style codes; pick one "
                             f"sample's deltas with deltas.index(i) or pass matching batches")
        delta_map = {n: t.to(device=generator.device, dtype=generator.dtype) for n, t in deltas.items()}
    images = InferenceEngine(generator).render(deltas=delta_map, randomize_noise=randomize_noise, style_codes=codes)
    crop = generator.config.output_crop
    return images[:, :, crop[0]:crop[1], :] if crop else images


__all__ = ["OFFICIAL_EDIT_LAYER_COUNT", "StyleStd", "official_layer_names", "is_torgb_layer", "styleclip_edit_layers",
           "channel_layout", "read_layer_table",
           "style_codes_to_official", "official_to_style_codes", "stats_by_layer", "render_style_codes"]
