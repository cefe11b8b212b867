"""GANSpace: PCA directions in W, and the official HyperStyle cars editor built on them.

A GANSpace edit sets the coordinate of a latent along one principal component to an absolute value (in units of that
component's standard deviation) on a range of W+ entries. Semantics follow editing/cars_editor.py:CarsEditor
(`_get_delta` + `apply_ganspace`) of the official HyperStyle repository:

    w_coord = <latent[0] - mean, comp[k]> / std[k]          # W+ entry 0 of the sample, always
    delta   = (strength - w_coord) * comp[k] * std[k]       # [1, D]
    latent[start:end] += delta                              # end exclusive, other entries untouched

Render the edited latent with the image's weight deltas (`generate(generator, edited, deltas)`), as the official
editor does. The statistics file (`cars_pca.pt`: mean [1, 512], std [80], comp [80, 1, 512]) is read with the safe
loader, or from our safetensors (`save_ganspace`); `compute_ganspace` makes one for any generator.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, NamedTuple, Sequence

import torch
from safetensors import safe_open

from ..io.formats import read_format_metadata, require_safetensors_suffix, write_safetensors
from ..io.unpickle import read_official_checkpoint
from ..nn.configs import MAX_STYLE_DIM
from ..nn.stylegan2 import Generator

log = logging.getLogger(__name__)



class GanSpaceEdit(NamedTuple):
    """One GANSpace edit, as in the official editor's tuples (equal to a plain `(component, start, end, strength)`)."""
    component: int      # principal component index (0 = largest variance)
    start: int          # first W+ entry edited
    end: int            # one past the last W+ entry edited
    strength: float     # target coordinate along the component, in standard deviations


# editing/cars_editor.py:CarsEditor.directions, in order: Pose I, Pose II, Cube, Color, Grass.
CARS_PRESETS: list[GanSpaceEdit] = [GanSpaceEdit(0, 0, 5, 2), GanSpaceEdit(0, 0, 5, -2), GanSpaceEdit(16, 3, 6, 25),
                                    GanSpaceEdit(22, 9, 11, -8), GanSpaceEdit(41, 9, 11, -18)]
CARS_PRESET_NAMES: tuple[str, ...] = ("pose_1", "pose_2", "cube", "color", "grass")


@dataclass(frozen=True, eq=False)   # tensors have no single truth value: compare by identity
class GanSpaceDirections:
    """PCA statistics of W, in the layout of the official `cars_pca.pt`.

    Attributes:
        mean: [1, D] mean W vector.
        std: [K] standard deviation of W along each component (sqrt of the explained variance). Descending from
            compute_ganspace; the official cars_pca.pt is only nearly so (e.g. std[11] < std[12]).
        comp: [K, 1, D] unit-norm, mutually orthogonal principal directions, largest variance first.
        name: label used in messages.
        provenance: string facts about where the statistics came from (saved as metadata).
    """
    mean: torch.Tensor
    std: torch.Tensor
    comp: torch.Tensor
    name: str = "ganspace"
    provenance: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for attr in ("mean", "std", "comp"):
            t = getattr(self, attr)
            if not isinstance(t, torch.Tensor) or not t.is_floating_point():
                raise ValueError(f"{self.name}: GANSpace '{attr}' must be a float tensor, got {type(t).__name__}")
        ok = self.mean.ndim == 2 and self.mean.shape[0] == 1 and self.std.ndim == 1
        if not ok or tuple(self.comp.shape) != (self.std.shape[0], 1, self.mean.shape[1]):
            raise ValueError(f"{self.name}: GANSpace statistics have shapes mean {list(self.mean.shape)}, std "
                             f"{list(self.std.shape)}, comp {list(self.comp.shape)}; expected mean [1, D], std [K], "
                             f"comp [K, 1, D] (as in cars_pca.pt)")

    @property
    def n_components(self) -> int:
        return self.std.shape[0]

    @property
    def style_dim(self) -> int:
        return self.mean.shape[-1]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "GanSpaceDirections":
        return GanSpaceDirections(self.mean.to(device=device, dtype=dtype), self.std.to(device=device, dtype=dtype),
                                  self.comp.to(device=device, dtype=dtype), self.name, dict(self.provenance))


# ----------------------------------------------------------------------------------------------- file I/O

def _from_tensors(tensors: Mapping[str, torch.Tensor], name: str,
                  provenance: Mapping[str, str] | None = None) -> GanSpaceDirections:
    missing = [k for k in ("mean", "std", "comp") if not isinstance(tensors.get(k), torch.Tensor)]
    if missing:
        raise ValueError(f"{name} is not a GANSpace file: it lacks {', '.join(missing)} (expected tensors mean "
                         f"[1, D], std [K], comp [K, 1, D], as in the official cars_pca.pt)")
    _check_sizes(tensors["mean"], tensors["std"], tensors["comp"], name)
    mean, std, comp = (tensors[k].detach().float().cpu() for k in ("mean", "std", "comp"))
    if not all(bool(torch.isfinite(t).all()) for t in (mean, std, comp)):
        raise ValueError(f"{name}: GANSpace statistics hold NaN or Inf values; the file is damaged. Use the "
                         f"original cars_pca.pt or compute them again with compute_ganspace")
    # Tolerate squeezed layouts ([D] mean, [K, D] comp, [K, 1] std) and store the official ones.
    mean = mean.reshape(1, -1)
    std = std.reshape(-1)
    if comp.ndim == 2:
        comp = comp.unsqueeze(1)
    return GanSpaceDirections(mean.contiguous(), std.contiguous(), comp.contiguous(), name, dict(provenance or {}))


def _check_sizes(mean: torch.Tensor, std: torch.Tensor, comp: torch.Tensor, name: str) -> None:
    """Bound the sizes before anything is copied: D <= MAX_STYLE_DIM, K <= D and comp of K x D values."""
    d, k = mean.numel(), std.numel()
    if not (1 <= d <= MAX_STYLE_DIM and 1 <= k <= d and comp.numel() == k * d):
        raise ValueError(f"{name}: GANSpace statistics have shapes mean {list(mean.shape)}, std {list(std.shape)}, "
                         f"comp {list(comp.shape)}; expected mean [1, D], std [K], comp [K, 1, D] with "
                         f"K <= D <= {MAX_STYLE_DIM} (cars_pca.pt: D 512, K 80)")


def load_ganspace(path: str | os.PathLike) -> GanSpaceDirections:
    """Read GANSpace statistics: an official `.pt` (safe loader, e.g. cars_pca.pt) or a file from `save_ganspace`.

    Returns:
        GanSpaceDirections on the CPU in float32.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist. Use the official cars_pca.pt or a file written by "
                                f"save_ganspace / compute_ganspace.")
    if path.suffix.lower() in (".pt", ".pth"):
        obj = read_official_checkpoint(path)
        if not isinstance(obj, Mapping):
            raise ValueError(f"{path.name} holds a {type(obj).__name__}, not GANSpace statistics (a dict with "
                             f"mean, std, comp). An InterFaceGAN direction loads with load_direction instead.")
        return _from_tensors(obj, path.stem, {"source_name": path.name})

    meta = read_format_metadata(path, "ganspace", "load the official cars_pca.pt, or write statistics with "
                                                  "save_ganspace / compute_ganspace")
    with safe_open(str(path), framework="pt", device="cpu") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    provenance = {k: v for k, v in meta.items() if k not in ("format", "version", "format_version", "config")}
    return _from_tensors(tensors, path.stem, provenance)


def save_ganspace(directions: GanSpaceDirections, path: str | os.PathLike) -> Path:
    """Write GANSpace statistics as safetensors (mean, std, comp + string metadata), atomically.

    Returns:
        the written path.
    """
    path = require_safetensors_suffix(path, "save_ganspace")
    tensors = {k: getattr(directions, k).detach().float().cpu() for k in ("mean", "std", "comp")}
    meta = {str(k): str(v) for k, v in directions.provenance.items()}
    meta["config"] = json.dumps({"n_components": directions.n_components, "style_dim": directions.style_dim})
    return write_safetensors(path, tensors, "ganspace", meta)


# ----------------------------------------------------------------------------------------------- editing

def _check_latent(latent: torch.Tensor, directions: GanSpaceDirections) -> None:
    if not isinstance(latent, torch.Tensor) or latent.ndim != 3:
        shape = list(latent.shape) if isinstance(latent, torch.Tensor) else type(latent).__name__
        raise ValueError(f"GANSpace edits need W+ latents [B, n_latent, D], got {shape}. Expand W codes first with "
                         f"generator.broadcast_latent(w).")
    if latent.shape[-1] != directions.style_dim:
        raise ValueError(f"latent has dim {latent.shape[-1]} but the GANSpace statistics {directions.name!r} are for "
                         f"dim {directions.style_dim}; use statistics computed for this generator")


def _check_component(directions: GanSpaceDirections, component: int) -> None:
    if not 0 <= int(component) < directions.n_components:
        raise ValueError(f"GANSpace component {component} does not exist: {directions.name!r} has components "
                         f"0..{directions.n_components - 1}")


def ganspace_coordinate(latent: torch.Tensor, directions: GanSpaceDirections, component: int) -> torch.Tensor:
    """Each sample's coordinate along a component, in standard deviations, read from W+ entry 0 (as upstream).

    Args:
        latent: W+ [B, n_latent, D].
        directions: GANSpace statistics for this generator.
        component: principal component index.
    Returns:
        [B] `<latent[:, 0] - mean, comp[component]> / std[component]`.
    """
    _check_latent(latent, directions)
    _check_component(directions, component)
    dtype = torch.promote_types(latent.dtype, torch.float32)
    w0 = latent[:, 0].to(dtype)
    mean = directions.mean.to(device=latent.device, dtype=dtype)
    comp = directions.comp[component].to(device=latent.device, dtype=dtype)     # [1, D]
    std = directions.std[component].to(device=latent.device, dtype=dtype)
    return ((w0 - mean) * comp).sum(-1) / std


def ganspace_edit(latent: torch.Tensor, directions: GanSpaceDirections, component: int, start_layer: int,
                  end_layer: int, strength: float) -> torch.Tensor:
    """Move W+ entries start_layer:end_layer so the sample's coordinate along `component` becomes `strength`.

    Official cars-editor semantics (per sample b):
        w_coord = <latent[b, 0] - mean, comp[k]> / std[k]
        latent[b, start:end] += (strength - w_coord) * comp[k] * std[k]
    The coordinate always comes from entry 0, also when entry 0 is outside start:end. For the W-encoder's codes
    (one vector repeated) every edited entry then sits exactly at `strength`; strength == w_coord is a no-op.

    Args:
        latent: W+ [B, n_latent, D] (not modified).
        directions: GANSpace statistics, e.g. load_ganspace("cars_pca.pt").
        component: principal component index k.
        start_layer, end_layer: W+ entries start_layer <= i < end_layer are edited.
        strength: target coordinate, in standard deviations of the component.
    Returns:
        edited latent, same shape, dtype and device as `latent`.
    """
    _check_latent(latent, directions)
    n = latent.shape[1]
    if not 0 <= int(start_layer) < int(end_layer) <= n:
        raise ValueError(f"GANSpace layer range {start_layer}:{end_layer} is not inside the latent's {n} W+ entries; "
                         f"use 0 <= start < end <= {n} (end is exclusive)")
    w_coord = ganspace_coordinate(latent, directions, component)                   # [B]
    dtype = w_coord.dtype
    comp = directions.comp[component].to(device=latent.device, dtype=dtype)       # [1, D]
    std = directions.std[component].to(device=latent.device, dtype=dtype)
    delta = (float(strength) - w_coord)[:, None] * comp * std                       # [B, D]
    out = latent.to(dtype).clone()
    out[:, start_layer:end_layer] = out[:, start_layer:end_layer] + delta[:, None]
    return out.to(latent.dtype)


def ganspace_sweep(latent: torch.Tensor, directions: GanSpaceDirections,
                   edits: Sequence[tuple[int, int, int, float]] = CARS_PRESETS,
                   include_original: bool = True) -> torch.Tensor:
    """Several edits per sample, as CarsEditor.apply_ganspace renders them (original first, then each edit).

    Args:
        latent: W+ [B, n_latent, D].
        directions: GANSpace statistics.
        edits: (component, start, end, strength) tuples; default the official cars presets.
        include_original: put the unedited latent before each sample's edits.
    Returns:
        [B * (len(edits) + include_original), n_latent, D], sample-major (all of sample 0 first).
    """
    outs = [latent] if include_original else []
    outs += [ganspace_edit(latent, directions, *edit) for edit in edits]
    if not outs:
        raise ValueError("ganspace_sweep got no edits and include_original=False: nothing to return")
    return torch.stack(outs, dim=1).reshape(-1, *latent.shape[1:])


# ----------------------------------------------------------------------------------------------- computing PCA

def compute_ganspace(generator: Generator, n_samples: int = 100_000, n_components: int | None = None, seed: int = 0,
                     batch_size: int = 2_000, progress: Callable[[int, int], None] | None = None,
                     name: str = "ganspace") -> GanSpaceDirections:
    """PCA of W = mapping(z), z ~ N(0, I), as GANSpace does for StyleGAN2's W space.

    The covariance is accumulated in float64 over batches (memory O(batch_size * D + D^2)) around a shift taken from
    the first batch, which avoids cancellation. Components are the covariance eigenvectors, largest eigenvalue first,
    each signed so that its largest-magnitude entry is positive (PCA leaves the sign free).

    Args:
        generator: a Generator (or a model's `.generator`); its mapping network is used, no images are rendered.
        n_samples: number of z samples (>= 2; more than D for a full-rank estimate).
        n_components: K, at most D; default min(80, D) (80 as in cars_pca.pt).
        seed: seed of the z draws; the result is deterministic given seed and batch_size.
        batch_size: samples mapped per step.
        progress: optional callback(done, total) after each batch.
        name: label of the result.
    Returns:
        GanSpaceDirections on the CPU in float32: mean [1, D], std [K] = sqrt(variance along each component, unbiased),
        comp [K, 1, D].
    """
    d = generator.config.style_dim
    k = min(80, d) if n_components is None else int(n_components)
    if not 1 <= k <= d:
        raise ValueError(f"n_components must be between 1 and the style dim {d}, got {n_components}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a variance, got {n_samples}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if n_samples <= d:
        log.warning("compute_ganspace: %d samples for a %d-dim W give a rank-deficient covariance", n_samples, d)
    param = next(generator.parameters())
    rng = torch.Generator(device="cpu").manual_seed(int(seed))
    shift = None
    total = torch.zeros(d, dtype=torch.float64)
    outer = torch.zeros(d, d, dtype=torch.float64)
    done = 0
    with torch.no_grad():
        while done < n_samples:
            b = min(batch_size, n_samples - done)
            z = torch.randn(b, d, generator=rng).to(device=param.device, dtype=param.dtype)
            w = generator.mapping(z).to(device="cpu", dtype=torch.float64)
            if shift is None:
                shift = w.mean(0)
            x = w - shift
            total += x.sum(0)
            outer += x.T @ x
            done += b
            if progress is not None:
                progress(done, n_samples)
    n = float(n_samples)
    mean_shifted = total / n
    cov = (outer - n * torch.outer(mean_shifted, mean_shifted)) / (n - 1.0)
    cov = 0.5 * (cov + cov.T)
    eigvals, eigvecs = torch.linalg.eigh(cov)                 # ascending
    order = torch.argsort(eigvals, descending=True)[:k]
    var = eigvals[order].clamp_min(0.0)
    comp = eigvecs[:, order].T.contiguous()                   # [K, D], orthonormal rows
    pivot = comp.abs().argmax(dim=1)
    signs = torch.sign(comp.gather(1, pivot[:, None]))
    comp = comp * torch.where(signs == 0, torch.ones_like(signs), signs)
    mean = (shift + mean_shifted)[None]
    provenance = {"n_samples": str(n_samples), "seed": str(seed), "batch_size": str(batch_size),
                  "generator_size": str(generator.config.size), "method": "pca of mapping(z), z ~ N(0, I)"}
    return GanSpaceDirections(mean.float(), var.sqrt().float(), comp.float().unsqueeze(1), name, provenance)
