"""What determines each output of a folder run, as short keys recorded in the manifest.

A key is a hash of everything an output depends on: the options that shape it (alignment settings, iterations, edit
name and factor, transfer generator and latent kind, deltas storage dtype, model dtype) and the identities of the
model files that made it (`model_identity`: the sha256 of the official file recorded as `source_sha256` in a
converted file's metadata, read from the header only; otherwise the file's own sha256). The input file itself is
identified by its size and modification time, recorded beside the keys.

    alignment key   align on/off, crop size                          -> _aligned.png, _alignment.json
    inversion key   alignment key, iterations, fast mode, HyperStyle and W-encoder identities, model dtype
                                                                      -> _inversion.png, _pasted.png
    edit key        inversion key, direction name, factor, direction file identity -> _<edit>.png, _<edit>_pasted.png
    transfer key    inversion key, generator identity, latent kind (+ ReStyle-e4e identity) -> _<transfer>.png
    latent key      inversion key (+ ReStyle-e4e identity when the ReStyle latent is stored) -> _latent.safetensors
    deltas key      inversion key, storage dtype                     -> _deltas.safetensors

For saved-latent inputs (`edit`/`transfer` of a run's output) the "inversion key" is the identity of the latent and
deltas files instead. A re-run compares the recorded keys with these: an output whose key changed is written again,
and only what it depends on is recomputed (`run.runner`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..io.files import sha256_file
from ..io.formats import read_safetensors_metadata
from .options import RunOptions, edit_labels, transfer_label

__all__ = ["model_identity", "ModelIds", "digest", "alignment_key", "FileKeys", "file_keys", "wants_restyle_latent",
           "file_stat_identity"]

_IDENTITY_CACHE: dict[tuple[str, int, int], str] = {}


def digest(parts: object) -> str:
    """A short, stable hash of JSON-able `parts` (sorted keys): 16 hex digits."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def model_identity(path: str | os.PathLike) -> str:
    """Identity of a model file: `source_sha256` from a converted file's metadata (header only), else the sha256
    of the file itself (computed once per file version in this process)."""
    path = Path(path)
    st = path.stat()
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if cache_key in _IDENTITY_CACHE:
        return _IDENTITY_CACHE[cache_key]
    recorded = ""
    if path.suffix.lower() == ".safetensors":
        recorded = read_safetensors_metadata(path).get("source_sha256", "")
    # A converted file names what it was made from; files written from memory (save_model) record "", and an
    # official .pt direction is read as it is: both are identified by their own bytes.
    identity = f"source:{recorded}" if recorded else f"file:{sha256_file(path)}"
    _IDENTITY_CACHE[cache_key] = identity
    return identity


def file_stat_identity(path: Path) -> list[int] | None:
    """[size, mtime_ns] of a file, None when it cannot be read."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


@dataclass(frozen=True)
class ModelIds:
    """Identities (`model_identity`) of the model files a run uses; None for a model it does not use."""
    hyperstyle: str | None = None
    w_encoder: str | None = None
    restyle: str | None = None
    directions: dict[str, str] = field(default_factory=dict)     # edit name -> identity
    transfers: dict[str, str] = field(default_factory=dict)      # transfer label -> identity

    def to_dict(self) -> dict:
        return {"hyperstyle": self.hyperstyle, "w_encoder": self.w_encoder, "restyle": self.restyle,
                "directions": dict(self.directions), "transfers": dict(self.transfers)}


def wants_restyle_latent(options: RunOptions) -> bool:
    """Whether an inverted photo's _latent file holds the ReStyle-e4e latent too (written for restyle transfers)."""
    return ("transfers" in options.products and bool(options.transfers) and options.transfer_latent == "restyle")


def _dtype_name(dtype: object) -> str:
    if isinstance(dtype, torch.dtype):
        return str(dtype).removeprefix("torch.")
    return str(dtype or "float32")


def alignment_key(options: RunOptions) -> str:
    """Key of the aligned crop and its record (and of the encoders' input)."""
    if not options.align:
        return digest({"align": False})
    return digest({"align": True, "align_size": options.align_size, "transform_size": options.align_size})


@dataclass(frozen=True)
class FileKeys:
    """The keys of one input's outputs under the current options."""
    alignment: str
    inversion: str                      # the base every rendering depends on
    by_kind: dict[tuple[str, str | None], str]    # (kind, label) -> key, kinds as `run.naming.output_kinds`

    def key(self, kind: str, label: str | None) -> str:
        return self.by_kind[(kind, label)]


def file_keys(options: RunOptions, ids: ModelIds, latent_input: bool,
              saved_files: tuple[list[int] | None, list[int] | None] | None = None) -> FileKeys:
    """Keys of every output an input can have under `options`.

    Args:
        options: the run's options.
        ids: model identities (`ModelIds`).
        latent_input: the input is a saved latent (edit/transfer of a run's output), not a photo.
        saved_files: for latent inputs, ([size, mtime_ns] of the _latent file, of its _deltas file).
    """
    align = alignment_key(options)
    if latent_input:
        base = digest({"saved": list(saved_files or (None, None)), "hyperstyle": ids.hyperstyle})
    else:
        # `fast` enters the key only when on, so that exact runs recorded before the option existed stay done.
        base = digest({"alignment": align, "iterations": options.iterations, "hyperstyle": ids.hyperstyle,
                       "w_encoder": ids.w_encoder, "dtype": _dtype_name(options.dtype),
                       **({"fast": True} if options.fast else {})})
    by_kind: dict[tuple[str, str | None], str] = {
        ("aligned", None): align, ("alignment", None): align,
        ("inversion", None): base, ("pasted", None): digest({"inversion": base, "pasted": align}),
        ("deltas", None): digest({"inversion": base, "deltas_dtype": options.stored_deltas_dtype}),
    }
    restyle = wants_restyle_latent(options) and not latent_input
    by_kind[("latent", None)] = digest({"inversion": base, "restyle": ids.restyle if restyle else None})
    if "edits" in options.products:
        for label, e in zip(edit_labels(options.edits), options.edits):
            key = digest({"inversion": base, "edit": e.name, "factor": e.factor,
                          "direction": ids.directions.get(e.name)})
            by_kind[("edit", label)] = key
            by_kind[("edit_pasted", label)] = digest({"edit": key, "pasted": align})
    if "transfers" in options.products:
        for spec in options.transfers:
            label = transfer_label(spec)
            uses_restyle = options.transfer_latent == "restyle" and not latent_input
            by_kind[("transfer", label)] = digest({
                "inversion": base, "generator": ids.transfers.get(label), "latent": options.transfer_latent,
                "restyle": ids.restyle if uses_restyle else None})
    return FileKeys(align, base, by_kind)
