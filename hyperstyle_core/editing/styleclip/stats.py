"""S statistics: per-channel mean and std of the style codes (StyleCLIP's S_mean_std).

The official file is a pickle `(means, stds)`: `read_s_mean_std` reads it with an unpickler that admits numpy arrays
only. `save_s_stats` / `load_s_stats` keep them as safetensors (format "styleclip_s_stats"), and `compute_s_stats`
computes them for any generator from latents drawn by `sample_w`.
"""
from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from safetensors.torch import load_file

from ...io.formats import read_format_metadata, write_safetensors
from ...io.unpickle import load_numpy_arrays_pickle
from ...nn.stylegan2 import Generator
from .layout import official_layer_names, read_layer_table


def _as_stat_list(items: Any, what: str, source: str) -> list[np.ndarray]:
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"{source}: {what} must be a non-empty list of 1-D float arrays, got {type(items).__name__}")
    out = []
    for i, a in enumerate(items):
        if isinstance(a, torch.Tensor):
            a = a.detach().cpu().numpy()
        if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind != "f" or a.size == 0:
            desc = f"{a.dtype} {list(a.shape)}" if isinstance(a, np.ndarray) else type(a).__name__
            raise ValueError(f"{source}: {what}[{i}] is {desc}; expected a 1-D float array (one value per channel)")
        if not np.isfinite(a).all():
            raise ValueError(f"{source}: {what}[{i}] holds NaN or Inf values; the statistics are damaged. Use the "
                             f"official file or compute them again with compute_s_stats")
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    return out


def _check_stats(means: Any, stds: Any, source: str) -> tuple[list[np.ndarray], list[np.ndarray]]:
    m = _as_stat_list(means, "means", source)
    s = _as_stat_list(stds, "stds", source)
    if [a.shape for a in m] != [a.shape for a in s]:
        raise ValueError(f"{source}: means and stds differ in layer count or sizes "
                         f"({[a.size for a in m]} vs {[a.size for a in s]})")
    return m, s


def read_s_mean_std(path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read the official StyleCLIP `S_mean_std` pickle without running arbitrary code.

    The pickle is `(means, stds)`: two lists of float32 arrays, one per S layer in official order (26 for the FFHQ
    1024px generator; entry c matches layer c of smaller generators too). Only numpy's array reconstruction is
    admitted (`io.unpickle.load_numpy_arrays_pickle`); anything else is refused with an UnpicklingError.

    Returns:
        (means, stds): lists of [dim_c] float32 arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. The official file is "
                                f"editing/styleclip/global_directions/ffhq/S_mean_std of the HyperStyle repository")
    with open(path, "rb") as f:
        try:
            data = load_numpy_arrays_pickle(
                f, "an S statistics pickle", "The file is not the official S_mean_std (or was tampered with); use "
                                             "the official file or a .safetensors written by save_s_stats")
        except pickle.UnpicklingError:
            raise
        except Exception as e:  # a truncated or non-pickle file fails in many ways
            raise ValueError(f"{path.name} is not a readable S statistics pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, (list, tuple)) or len(data) != 2:
        raise ValueError(f"{path.name} holds {type(data).__name__}; expected the pair (means, stds) of "
                         f"StyleCLIP's S_mean_std")
    return _check_stats(data[0], data[1], path.name)


def save_s_stats(path: str | os.PathLike, means: Sequence[np.ndarray | torch.Tensor],
                 stds: Sequence[np.ndarray | torch.Tensor], layer_names: Sequence[str] | None = None,
                 extra_metadata: Mapping[str, str] | None = None) -> Path:
    """Write S statistics as safetensors (`mean.<c>`, `std.<c>` float32 [dim_c]) with metadata.

    Args:
        means, stds: per-layer [dim_c] arrays in official order (e.g. from `read_s_mean_std`/`compute_s_stats`).
        layer_names: names of the entries; defaults to `official_layer_names(len(means))`.
        extra_metadata: further string metadata (e.g. the source file).
    Returns:
        The written path.
    """
    m, s = _check_stats(list(means), list(stds), "save_s_stats")
    names = official_layer_names(len(m)) if layer_names is None else list(layer_names)
    if len(names) != len(m):
        raise ValueError(f"{len(m)} layers of statistics but {len(names)} layer names")
    tensors = {}
    for c, (a, b) in enumerate(zip(m, s)):
        tensors[f"mean.{c:02d}"] = torch.from_numpy(a.copy())
        tensors[f"std.{c:02d}"] = torch.from_numpy(b.copy())
    meta = {"layers": json.dumps([[n, int(a.size)] for n, a in zip(names, m)])}
    meta.update({k: str(v) for k, v in (extra_metadata or {}).items()})
    return write_safetensors(path, tensors, "styleclip_s_stats", meta)


def load_s_stats(path: str | os.PathLike) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Read S statistics written by `save_s_stats`. Returns (means, stds) as lists of [dim_c] float32 arrays."""
    path = Path(path)
    if path.suffix.lower() not in (".safetensors", ".sft") and path.is_file():
        raise ValueError(f"{path.name} is not a .safetensors file; read the official pickle with read_s_mean_std "
                         f"and convert it once with save_s_stats")
    hint = "write one with save_s_stats(read_s_mean_std('S_mean_std'))"
    meta = read_format_metadata(path, "styleclip_s_stats", hint)
    n = len(read_layer_table(meta, path.name, hint))
    tensors = load_file(str(path))
    try:
        means = [tensors[f"mean.{c:02d}"].numpy() for c in range(n)]
        stds = [tensors[f"std.{c:02d}"].numpy() for c in range(n)]
    except KeyError as e:
        raise ValueError(f"{path.name} lacks tensor {e.args[0]}; write it again with save_s_stats") from None
    return _check_stats(means, stds, path.name)


def sample_w(generator: Generator, n_samples: int, seed: int = 0, truncation: float = 0.7,
             w_avg: torch.Tensor | None = None, batch_size: int = 1000) -> torch.Tensor:
    """W codes of random z, truncated towards the average W as StyleCLIP's GetCode.py does (psi 0.7).

    Args:
        w_avg: [style_dim] average W (e.g. the generator file's latent_avg); None = mean of 10,000 mapped z.
    Returns:
        [n_samples, style_dim] on the generator's device.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples is {n_samples}; it must be at least 1")
    device, dtype = generator.device, generator.dtype
    gen = torch.Generator().manual_seed(seed)
    d = generator.config.style_dim
    if w_avg is not None:
        if w_avg.shape[-1] != d:
            raise ValueError(f"w_avg has shape {list(w_avg.shape)}; expected [{d}] (or [n_latent, {d}], row 0 is used)")
        w_avg = w_avg.reshape(-1, d)[0]
    with torch.no_grad():
        if truncation != 1.0 and w_avg is None:
            z = torch.randn(10_000, d, generator=torch.Generator().manual_seed(seed + 1_000_003))
            w_avg = torch.cat([generator.mapping(c.to(device, dtype)) for c in z.split(batch_size)]).mean(0)
        z = torch.randn(n_samples, d, generator=gen)
        latent_avg = None if w_avg is None else w_avg.to(device, dtype)
        ws = [generator.mapping(c.to(device, dtype), truncation=truncation, truncation_latent=latent_avg)
              for c in z.split(batch_size)]
    return torch.cat(ws)


def compute_s_stats(generator: Generator, n_samples: int = 100_000, seed: int = 0, truncation: float = 0.7,
                    w_avg: torch.Tensor | None = None,
                    batch_size: int = 1000) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-channel mean and std of the S codes of random latents (StyleCLIP's S_mean_std for any generator).

    Official: 100,000 W samples with truncation 0.7, population std. Only the mapping and modulations run.

    Returns:
        (means, stds) lists of [dim_c] float32 arrays in `generator.layer_names` order (save with `save_s_stats`).
    """
    w = sample_w(generator, n_samples, seed, truncation, w_avg, batch_size)
    total = {n: None for n in generator.layer_names}
    total_sq = dict(total)
    with torch.no_grad():
        for chunk in w.split(batch_size):
            codes = generator.style_codes(chunk)
            for n in generator.layer_names:
                s = codes[n].double()
                total[n] = s.sum(0) if total[n] is None else total[n] + s.sum(0)
                total_sq[n] = (s * s).sum(0) if total_sq[n] is None else total_sq[n] + (s * s).sum(0)
    means, stds = [], []
    for n in generator.layer_names:
        mean = total[n] / n_samples
        var = (total_sq[n] / n_samples - mean * mean).clamp_min(0)
        means.append(mean.float().cpu().numpy())
        stds.append(var.sqrt().float().cpu().numpy())
    return means, stds


__all__ = ["read_s_mean_std", "save_s_stats", "load_s_stats", "sample_w", "compute_s_stats"]
