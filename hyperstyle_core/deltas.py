"""Weight deltas: HyperStyle's per-sample, per-layer relative weight offsets as a typed object.

Upstream passes a positional list with None for untouched layers, applied as `W * (1 + delta)`. Here it is a
mapping {generator layer name: [B, out, in, k, k]} plus the signature of the generator it was made for.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import torch
from safetensors import safe_open

from .io.formats import read_format_metadata, write_safetensors
from .nn.configs import MAX_CHANNEL_MULTIPLIER, MAX_SIZE, MAX_STYLE_DIM, MIN_SIZE
from .nn.stylegan2 import CHANNELS_BASE, Generator, GeneratorConfig, modulated_layer_table

# Layer presets in official delta indices; index i renders at 4 px (i < 2), else at 2 ** ((i - 2) // 3 + 3) px.
TOONIFY_LAYERS = (14, 15, 17, 18, 20, 21, 23, 24)   # utils/domain_adaptation_utils.py
_FIRST_LAYER = {"medium_fine": 5, "fine": 11}        # 16 px and up; 64 px and up
LAYER_PRESETS = ("toonify", "all", "medium_fine", "fine")


def preset_layers(preset: str, n_layers: int) -> tuple[int, ...]:
    """Official delta indices of a layer preset for a generator with `n_layers` modulated layers.

    Presets: "toonify" (the official domain-adaptation set), "all", "medium_fine" (16 px and up), "fine" (64 px
    and up).
    """
    if preset == "toonify":
        return tuple(i for i in TOONIFY_LAYERS if i < n_layers)
    if preset == "all":
        return tuple(range(n_layers))
    if preset in _FIRST_LAYER:
        return tuple(range(_FIRST_LAYER[preset], n_layers))
    raise ValueError(f"unknown layer preset {preset!r}; choose one of {', '.join(LAYER_PRESETS)}")


@dataclass(frozen=True)
class GeneratorSignature:
    """What a set of deltas fits: resolution, style dim and (out, in, k) of every modulated layer."""
    size: int
    style_dim: int
    layers: tuple[tuple[str, int, int, int], ...]     # (name, out, in, k) in official index order

    @classmethod
    def of(cls, generator: Generator | GeneratorConfig) -> "GeneratorSignature":
        config = generator.config if isinstance(generator, Generator) else generator
        return cls(config.size, config.style_dim, tuple(modulated_layer_table(config)))

    @cached_property
    def _by_name(self) -> dict[str, tuple[int, tuple[int, int, int, int]]]:
        # Built once, so looking up every layer of a set of deltas is linear in the layer count.
        return {n: (i, (out, inp, k, k)) for i, (n, out, inp, k) in enumerate(self.layers)}

    def layer_shape(self, name: str) -> tuple[int, int, int, int]:
        """(out, in, k, k) of a layer; KeyError for a name this generator does not have."""
        return self._by_name[name][1]

    def layer_index(self, name: str) -> int:
        """The official delta index of a layer; KeyError for a name this generator does not have."""
        return self._by_name[name][0]

    def layer_name(self, index: int) -> str:
        return self.layers[index][0]

    def to_json(self) -> str:
        return json.dumps({"size": self.size, "style_dim": self.style_dim, "layers": [list(x) for x in self.layers]})

    @classmethod
    def from_json(cls, text: str) -> "GeneratorSignature":
        """Parse `to_json` output, validated: the layers must be those of a supported generator of that size.

        Raises:
            ValueError naming what is wrong (unreadable JSON, a missing field, a size or layer that no generator has).
        """
        try:
            d = json.loads(text)
        except (TypeError, json.JSONDecodeError, RecursionError):
            raise ValueError("the signature is not readable JSON") from None
        if not isinstance(d, dict):
            raise ValueError(f"the signature is a JSON {type(d).__name__}, expected an object with size, style_dim "
                             f"and layers")
        size = _signature_int(d, "size", MIN_SIZE, MAX_SIZE)
        if size & (size - 1):
            raise ValueError(f"signature size {size} is not a power of two")
        style_dim = _signature_int(d, "style_dim", 1, MAX_STYLE_DIM)
        return cls(size, style_dim, _signature_layers(d.get("layers"), size))

    def mismatch(self, other: "GeneratorSignature") -> str | None:
        """None if equal, else a sentence naming the first difference."""
        if self.size != other.size:
            return f"they were made for a {self.size}px generator, this one is {other.size}px"
        if self.style_dim != other.style_dim:
            return f"they were made for style dim {self.style_dim}, this generator has {other.style_dim}"
        for mine, theirs in zip(self.layers, other.layers):
            if mine != theirs:
                return (f"layer {mine[0]} is {mine[1]}x{mine[2]}x{mine[3]}x{mine[3]} in the deltas but "
                        f"{theirs[0]} is {theirs[1]}x{theirs[2]}x{theirs[3]}x{theirs[3]} in this generator")
        if len(self.layers) != len(other.layers):
            return f"they cover {len(self.layers)} layers, this generator has {len(other.layers)}"
        return None


class WeightDeltas(Mapping[str, torch.Tensor]):
    """Immutable mapping {layer name: [B, out, in, k, k]} with a batch dimension and a generator signature.

    Layers not present are untouched (delta 0). Arithmetic returns new objects; inputs are never mutated.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], signature: GeneratorSignature):
        batch = None
        for name, t in tensors.items():
            try:
                out, inp, k, _ = signature.layer_shape(name)
            except KeyError:
                raise ValueError(f"delta for unknown layer {name!r}; known layers: "
                                 f"{', '.join(n for n, *_ in signature.layers)}") from None
            if t.ndim != 5 or tuple(t.shape[1:]) != (out, inp, k, k):
                raise ValueError(f"delta for {name} has shape {list(t.shape)}, expected [B, {out}, {inp}, {k}, {k}]")
            if batch is None:
                batch = t.shape[0]
            elif t.shape[0] != batch:
                raise ValueError(f"delta batch sizes differ: {name} has {t.shape[0]}, others {batch}")
        order = [n for n, *_ in signature.layers]
        self._tensors = {n: tensors[n] for n in order if n in tensors}
        self.signature = signature
        self.batch_size = batch or 0

    # Mapping protocol
    def __getitem__(self, name: str) -> torch.Tensor:
        return self._tensors[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._tensors)

    def __len__(self) -> int:
        return len(self._tensors)

    def __repr__(self) -> str:
        return (f"WeightDeltas(batch={self.batch_size}, size={self.signature.size}, "
                f"layers=[{', '.join(self._tensors)}])")

    @property
    def layer_indices(self) -> list[int]:
        """Official delta indices of the layers present."""
        return [self.signature.layer_index(n) for n in self._tensors]

    # Construction
    @classmethod
    def from_official_list(cls, deltas: Sequence[torch.Tensor | None], signature: GeneratorSignature) -> "WeightDeltas":
        """From the upstream positional list (None = untouched)."""
        if len(deltas) != len(signature.layers):
            raise ValueError(f"official delta list has {len(deltas)} entries; a {signature.size}px generator "
                             f"has {len(signature.layers)} modulated layers")
        return cls({signature.layer_name(i): d for i, d in enumerate(deltas) if d is not None}, signature)

    def to_official_list(self) -> list[torch.Tensor | None]:
        return [self._tensors.get(n) for n, *_ in self.signature.layers]

    # Arithmetic
    def scale(self, strength: float) -> "WeightDeltas":
        """Multiply every offset by `strength` (0 = plain generator, 1 = as predicted)."""
        return WeightDeltas({n: t * strength for n, t in self._tensors.items()}, self.signature)

    def __mul__(self, strength: float) -> "WeightDeltas":
        return self.scale(float(strength))

    __rmul__ = __mul__

    def __add__(self, other: "WeightDeltas") -> "WeightDeltas":
        """Layer-wise sum; a layer missing on one side counts as zero."""
        if not isinstance(other, WeightDeltas):
            return NotImplemented
        problem = self.signature.mismatch(other.signature)
        if problem:
            raise ValueError(f"cannot add deltas of different generators: {problem}")
        if self._tensors and other._tensors and self.batch_size != other.batch_size:
            raise ValueError(f"cannot add deltas with batch sizes {self.batch_size} and {other.batch_size}")
        out = dict(self._tensors)
        for n, t in other._tensors.items():
            out[n] = out[n] + t if n in out else t
        return WeightDeltas(out, self.signature)

    def select(self, layers: Iterable[int | str]) -> "WeightDeltas":
        """Keep only the given layers (official indices or names); e.g. select(TOONIFY_LAYERS).

        Indices past this generator's last layer are ignored (the Toonify set names 1024px layers), as upstream does.
        """
        names = set()
        known = [n for n, *_ in self.signature.layers]
        for layer in layers:
            if isinstance(layer, int):
                if layer < 0:
                    raise ValueError(f"layer index must be >= 0, got {layer}")
                if layer < len(known):
                    names.add(known[layer])
            elif layer in known:
                names.add(layer)
            else:
                raise ValueError(f"unknown layer {layer!r}; known layers: {', '.join(known)}")
        return WeightDeltas({n: t for n, t in self._tensors.items() if n in names}, self.signature)

    def select_preset(self, preset: str) -> "WeightDeltas":
        """Restrict to a layer preset (see `preset_layers`), e.g. "toonify" for domain adaptation."""
        return self.select(preset_layers(preset, len(self.signature.layers)))

    def sample(self, i: int) -> "WeightDeltas":
        """The deltas of sample `i` of a batch (batch size 1); deltas of batch size 1 are shared by every sample."""
        if self.batch_size == 1:
            return self
        if not -self.batch_size <= i < self.batch_size:
            raise ValueError(f"sample {i} does not exist: these deltas have a batch of {self.batch_size}")
        return self.index(i)

    def repeat_each(self, n_samples: int, times: int) -> "WeightDeltas":
        """Deltas for `n_samples` samples each repeated `times` times, sample-major (as `sweep_direction` orders
        latents); deltas of batch size 1 stay shared."""
        if self.batch_size == 1:
            return self
        if self.batch_size != n_samples:
            raise ValueError(f"{self.batch_size} sets of deltas for {n_samples} latents; give one set per latent "
                             f"or one shared set")
        return self.index(torch.arange(n_samples).repeat_interleave(times))

    def index(self, idx: int | slice | Sequence[int] | torch.Tensor) -> "WeightDeltas":
        """Select samples along the batch dimension (the batch dim is kept)."""
        if isinstance(idx, int):
            idx = slice(idx, idx + 1) if idx != -1 else slice(-1, None)
        return WeightDeltas({n: t[idx] for n, t in self._tensors.items()}, self.signature)

    def __getstate__(self):
        return {"tensors": self._tensors, "signature": self.signature, "batch_size": self.batch_size}

    def __setstate__(self, state):
        self._tensors, self.signature, self.batch_size = state["tensors"], state["signature"], state["batch_size"]

    @staticmethod
    def cat(items: Sequence["WeightDeltas"]) -> "WeightDeltas":
        """Concatenate along the batch dimension; all items must have the same signature and layers."""
        if not items:
            raise ValueError("WeightDeltas.cat needs at least one item")
        first = items[0]
        for other in items[1:]:
            problem = first.signature.mismatch(other.signature)
            if problem:
                raise ValueError(f"cannot concatenate deltas of different generators: {problem}")
            if list(other) != list(first):
                raise ValueError(f"cannot concatenate deltas over different layers: {list(first)} vs {list(other)}")
        return WeightDeltas({n: torch.cat([d[n] for d in items], 0) for n in first}, first.signature)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "WeightDeltas":
        return WeightDeltas({n: t.to(device=device, dtype=dtype) for n, t in self._tensors.items()}, self.signature)

    def detach(self) -> "WeightDeltas":
        return WeightDeltas({n: t.detach() for n, t in self._tensors.items()}, self.signature)

    # Checks
    def check_compatible(self, generator: Generator) -> None:
        """Raise ValueError if these deltas cannot be applied to `generator`."""
        problem = self.signature.mismatch(GeneratorSignature.of(generator))
        if problem:
            raise ValueError(f"These weight deltas do not fit this generator: {problem}. Use deltas from a "
                             f"HyperStyle model of the same resolution ({generator.size}px), or load a "
                             f"{self.signature.size}px generator.")

    # I/O
    def save(self, path: str | os.PathLike, extra_metadata: Mapping[str, str] | None = None,
             dtype: torch.dtype | None = None) -> None:
        """Write a safetensors file atomically (temp file + rename).

        dtype: storage dtype (default: as held). torch.float16 / torch.bfloat16 halve the file; `load` returns the
        stored dtype, and rendering with them differs slightly from the float32 originals (docs/cli.md, "Storing the
        deltas").
        """
        tensors = {n: t if dtype is None else t.to(dtype) for n, t in self._tensors.items()}
        write_safetensors(path, tensors, "weight_deltas",
                          {"signature": self.signature.to_json(), "batch_size": self.batch_size,
                           **(extra_metadata or {})})

    @classmethod
    def load(cls, path: str | os.PathLike, device: torch.device | str = "cpu") -> "WeightDeltas":
        """Read a file written by `save` (or the Save Deltas node).

        Linear in the file's size: the signature is validated first (a supported generator has at most 26
        modulated layers), then every tensor's name and shape are checked from the header before its data is read.

        Raises:
            ValueError for another kind of file, a missing or invalid signature, a tensor of an unknown layer or
            the wrong shape, and non-float or non-finite (NaN / Inf) values.
        """
        path = Path(path)
        meta = read_format_metadata(path, "weight_deltas", _SAVE_HINT)
        if "signature" not in meta:
            raise ValueError(f"{path.name} has no generator signature in its metadata; {_SAVE_HINT}")
        try:
            signature = GeneratorSignature.from_json(meta["signature"])
        except ValueError as e:
            raise ValueError(f"{path.name} has an invalid generator signature: {e}; {_SAVE_HINT}") from None
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in f.keys():
                _check_stored_delta(path.name, key, f.get_slice(key).get_shape(), signature)
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        for key, t in tensors.items():
            if not t.is_floating_point():
                raise ValueError(f"{path.name}: delta for {key} has dtype {t.dtype}; deltas are floats. {_SAVE_HINT}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"{path.name}: delta for {key} holds NaN or Inf values; the file is damaged. "
                                 f"Invert the image again")
        try:
            deltas = cls(tensors, signature)
        except ValueError as e:
            raise ValueError(f"{path.name}: {e}") from None
        return deltas.to(device=device)


_SAVE_HINT = "save deltas with WeightDeltas.save or the HyperStyle Save Deltas node"


def _check_stored_delta(file_name: str, key: str, shape: Sequence[int], signature: GeneratorSignature) -> None:
    try:
        out, inp, k, _ = signature.layer_shape(key)
    except KeyError:
        raise ValueError(f"{file_name} holds a delta for {key[:80]!r}, which its {signature.size}px generator does "
                         f"not have; {_SAVE_HINT}") from None
    if len(shape) != 5 or list(shape[1:]) != [out, inp, k, k]:
        raise ValueError(f"{file_name}: delta for {key} has shape {list(shape)}, expected [B, {out}, {inp}, {k}, {k}]")


def _signature_int(d: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"signature {key} is {value!r:.40}; expected an integer from {lo} to {hi}")
    return value


def _signature_layers(layers: Any, size: int) -> tuple[tuple[str, int, int, int], ...]:
    """The stored layer table, checked against the names and kernel sizes a `size` px generator has."""
    # Names and kernels depend on the size only; channel counts also on the multiplier and divisor.
    reference = modulated_layer_table(GeneratorConfig(size))
    if not isinstance(layers, list) or len(layers) != len(reference):
        count = len(layers) if isinstance(layers, list) else type(layers).__name__
        raise ValueError(f"signature layers: {count} entries, but a {size}px generator has {len(reference)} "
                         f"modulated layers")
    max_channels = max(CHANNELS_BASE.values()) * MAX_CHANNEL_MULTIPLIER
    out = []
    for entry, (name, _, _, k) in zip(layers, reference):
        ok = (isinstance(entry, list) and len(entry) == 4 and entry[0] == name and entry[3] == k
              and all(isinstance(c, int) and not isinstance(c, bool) and 1 <= c <= max_channels for c in entry[1:3]))
        if not ok:
            raise ValueError(f"signature layer {str(entry)[:80]} is not layer {name} of a {size}px generator "
                             f"([name, out, in, {k}] with at most {max_channels} channels)")
        out.append((name, entry[1], entry[2], k))
    return tuple(out)
