"""Per-channel CLIP image-space directions `delta_i_c` (StyleCLIP's fs3) for any generator.

`compute_channel_directions` rebuilds them (StyleCLIP global_directions/SingleChannel.py): per channel, set it to
mean +/- alpha*std over sampled latents, render, embed with CLIP's image encoder and average the normalised
embedding differences. `save_channel_directions` / `load_channel_directions` keep them as safetensors (format
"styleclip_channel_directions"); the official fs3.npy is read too.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from ...io.formats import read_format_metadata, write_safetensors
from ...nn.stylegan2 import Generator
from .clip_model import encode_images
from .layout import StyleStd, channel_layout, read_layer_table, render_style_codes, stats_by_layer
from .stats import compute_s_stats, sample_w

Progress = Callable[[int, int], None]


def _style_codes_of(generator: Generator, w: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        chunks = [generator.style_codes(c) for c in w.split(batch_size)]
    return {n: torch.cat([c[n] for c in chunks]) for n in generator.layer_names}


def compute_channel_directions(generator: Generator, clip_model: Any, n_samples: int = 100, *,
                               s_stats: tuple[StyleStd, StyleStd] | None = None,
                               layers: Sequence[str] | None = None, alpha: float = 5.0, truncation: float = 0.7,
                               w_avg: torch.Tensor | None = None, seed: int = 0, batch_size: int = 32,
                               stat_samples: int = 100_000, min_change: float = 1e-4,
                               progress: Progress | None = None) -> torch.Tensor:
    """Per-channel CLIP image-space directions `delta_i_c` (StyleCLIP's fs3.npy) for any generator.

    For every channel c of `layers` and each of `n_samples` random latents: set channel c to mean_c - alpha*std_c
    and mean_c + alpha*std_c (all other channels as sampled), render both, embed with CLIP's image encoder,
    normalise the embeddings and take the normalised difference (plus minus minus). The channel's direction is the
    normalised mean of these differences (StyleCLIP global_directions/SingleChannel.py: GetFs).

    Differences shorter than `min_change` (the channel barely changes the image) count as zero, and a channel whose
    differences all vanish gets a zero row instead of upstream's NaN, so it never passes the beta threshold.

    Args:
        generator: the StyleGAN2 generator (rendered without weight deltas and with its stored noise).
        clip_model: CLIP model (`encode_image`, `visual.input_resolution`), see `load_clip`.
        n_samples: latents per channel (official 100).
        s_stats: (means, stds) in official order or by layer; None = `compute_s_stats(generator, stat_samples)`.
        layers: layers whose channels get rows, in row order; default `styleclip_edit_layers(generator.layer_names)`
            (the official first 11 non-ToRGB layers, as `global_direction` expects by default).
        alpha: perturbation in standard deviations (official 5).
        truncation, w_avg, seed: latent sampling (see `sample_w`).
        batch_size: images per generator/CLIP call (half plus, half minus).
        min_change: norm below which an embedding difference counts as no change.
        progress: called as progress(done, total) in channel-sample pairs after each batch; raise to stop.
    Returns:
        [n_channels, D] float32 on the CPU, unit rows (zero rows for channels without effect); rows follow `layers`.
    """
    layout = channel_layout(generator, layers)
    names, dims = [name for name, _ in layout], dict(layout)
    if batch_size < 2:
        raise ValueError(f"batch_size is {batch_size}; it must be at least 2 (one plus and one minus image)")
    if s_stats is None:
        s_stats = compute_s_stats(generator, stat_samples, seed + 1, truncation, w_avg)
    # A list is in official order and may be longer than this generator's (1024px statistics on a 256px model).
    means = stats_by_layer(s_stats[0], None, "means")
    stds = stats_by_layer(s_stats[1], None, "stds")
    for n in names:
        if n not in means or means[n].numel() != dims[n] or stds[n].numel() != dims[n]:
            raise ValueError(f"S statistics do not fit layer {n!r} ({dims[n]} channels); compute them for this "
                             f"generator with compute_s_stats")
    base = _style_codes_of(generator, sample_w(generator, n_samples, seed, truncation, w_avg), 256)
    layer_sizes = torch.tensor([dims[n] for n in names])
    ends = layer_sizes.cumsum(0)
    n_channels = int(ends[-1])
    starts = ends - layer_sizes
    values = {n: (means[n].to(generator.device, generator.dtype), stds[n].to(generator.device, generator.dtype))
              for n in names}

    total = n_channels * n_samples
    pairs_per_batch = batch_size // 2
    sums = None
    done = 0
    for first in range(0, total, pairs_per_batch):
        pair = torch.arange(first, min(first + pairs_per_batch, total))
        k = pair.numel()
        channel, sample = pair // n_samples, pair % n_samples
        codes = {n: base[n][sample].repeat(2, 1) for n in generator.layer_names}
        layer_of = torch.bucketize(channel, ends, right=True)
        for li in layer_of.unique().tolist():
            name = names[li]
            rows = (layer_of == li).nonzero().squeeze(1)
            cols = (channel[rows] - starts[li]).to(generator.device)
            rows = rows.to(generator.device)
            mean, std = values[name][0][cols], values[name][1][cols]
            codes[name][rows, cols] = mean + alpha * std
            codes[name][rows + k, cols] = mean - alpha * std
        images = render_style_codes(generator, codes)
        emb = encode_images(clip_model, images).cpu()
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        diff = emb[:k] - emb[k:]
        norm = diff.norm(dim=-1, keepdim=True)
        diff = torch.where(norm > min_change, diff / norm.clamp_min(1e-12), torch.zeros_like(diff))
        if sums is None:
            sums = torch.zeros(n_channels, diff.shape[1], dtype=torch.float64)
        sums.index_add_(0, channel, diff.double())
        done += k
        if progress is not None:
            progress(done, total)
    norm = sums.norm(dim=-1, keepdim=True)
    out = torch.where(norm > 1e-12, sums / norm.clamp_min(1e-300), torch.zeros_like(sums))
    return out.float()


def save_channel_directions(path: str | os.PathLike, delta_i_c: torch.Tensor, layers: Sequence[str],
                            layer_sizes: Sequence[int], extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write `delta_i_c` [n_channels, D] as safetensors with the row layout (layers and their sizes) as metadata."""
    if len(layers) != len(layer_sizes) or sum(layer_sizes) != delta_i_c.shape[0] or delta_i_c.ndim != 2:
        raise ValueError(f"delta_i_c {list(delta_i_c.shape)} does not match layers {list(layers)} with sizes "
                         f"{list(layer_sizes)} (their sum must equal the row count)")
    meta = {"layers": json.dumps([[n, int(s)] for n, s in zip(layers, layer_sizes)])}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    return write_safetensors(path, {"delta_i_c": delta_i_c.detach().float()}, "styleclip_channel_directions", meta)


def save_generator_channel_directions(path: str | os.PathLike, delta_i_c: torch.Tensor, generator: Generator,
                                      layers: Sequence[str] | None = None,
                                      extra_metadata: Mapping[str, str] | None = None) -> Path:
    """`save_channel_directions` with the row layout of `generator` (`channel_layout`): what
    `compute_channel_directions(generator, ..., layers=layers)` returned, saved so that it loads by layer name.

    Args:
        path: the .safetensors file to write.
        delta_i_c: [n_channels, D] channel directions, rows in `channel_layout(generator, layers)` order.
        generator: the generator they were computed for.
        layers: the layers they were computed for (default: the official layout, as `compute_channel_directions`).
        extra_metadata: more string metadata to store (e.g. what they were computed from).
    Returns:
        The written path.
    """
    layout = channel_layout(generator, layers)
    return save_channel_directions(path, delta_i_c, [name for name, _ in layout], [size for _, size in layout],
                                   extra_metadata)


def load_channel_directions(path: str | os.PathLike) -> tuple[torch.Tensor, list[str] | None]:
    """Read channel directions: a file from `save_channel_directions`, or the official fs3.npy.

    The .npy is read with `allow_pickle=False`. Returns (delta_i_c [n_channels, D] float32, row layers or None for
    .npy files, whose rows follow the official layout: the non-ToRGB layers in order).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; compute channel directions with "
                                f"compute_channel_directions or use the official fs3.npy")
    if path.suffix.lower() == ".npy":
        _check_npy_size(path)
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as e:
            raise ValueError(f"{path.name} is not a plain numeric .npy ({e})") from None
        if arr.ndim != 2 or arr.dtype.kind != "f":
            raise ValueError(f"{path.name} holds {arr.dtype} {list(arr.shape)}; expected [n_channels, 512] floats")
        return _finite_directions(torch.from_numpy(arr.astype(np.float32)), path.name), None
    hint = "write one with save_channel_directions (compute_channel_directions)"
    meta = read_format_metadata(path, "styleclip_channel_directions", hint)
    layers = [n for n, _ in read_layer_table(meta, path.name, hint)]
    tensors = load_file(str(path))
    delta_i_c = tensors.get("delta_i_c")
    if delta_i_c is None or delta_i_c.ndim != 2 or not delta_i_c.is_floating_point():
        raise ValueError(f"{path.name} has no float tensor 'delta_i_c' [n_channels, D]; {hint}")
    return _finite_directions(delta_i_c, path.name), layers


def _finite_directions(delta_i_c: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(delta_i_c).all()):
        raise ValueError(f"{name}: channel directions hold NaN or Inf values; the file is damaged. Compute them "
                         f"again with compute_channel_directions")
    return delta_i_c


_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _check_npy_size(path: Path) -> None:
    """Refuse a .npy whose header promises other than the data the file holds: np.load allocates the whole array
    its header describes before reading, so a 100-byte file could otherwise ask for gigabytes."""
    with open(path, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            if version not in _NPY_HEADER_READERS:
                raise ValueError(f"unsupported .npy format version {version}")
            shape, _, dtype = _NPY_HEADER_READERS[version](f)
        except ValueError as e:
            raise ValueError(f"{path.name} is not a plain numeric .npy ({e})") from None
        if dtype.hasobject:
            raise ValueError(f"{path.name} is not a plain numeric .npy (it holds Python objects)")
        expected = math.prod(shape) * dtype.itemsize
        present = path.stat().st_size - f.tell()
    if present != expected:
        raise ValueError(f"{path.name}: its header describes {dtype} {list(shape)} ({expected} bytes) but the file "
                         f"holds {present} bytes of data; it is truncated or damaged")


__all__ = ["Progress", "compute_channel_directions", "save_channel_directions", "save_generator_channel_directions",
           "load_channel_directions"]
