"""Converted model files -> models (`load`, `read_info`), and models -> files (`save_model`).

Runtime loading reads safetensors only, with strict keys, building the network from the typed config stored in the
file's metadata (nn.configs). Official `.pt` checkpoints are turned into such files by io.convert.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Mapping

import torch
from safetensors import safe_open
from torch import nn

from ..devices import resolve_device, resolve_dtype
from ..nn.engine.layout import set_conv_weight_layout
from ..nn.engine.plan import plan_inference
from ..nn.configs import build_model, config_from_dict, config_of, model_config
from ..nn.loss_networks import LOSS_NETWORK_KINDS, LossNetworkConfig
from .directions import LatentDirection, check_direction_shape, direction_from_tensor
from .formats import FORMATS, check_format, format_name, read_safetensors_header, write_safetensors
# The kinds, their titles and default files are those of the one registry of official files (io.registry); code
# that imports these names from here keeps working.
from .registry import DEFAULT_FILES, KIND_TITLES, KINDS


def _build(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """The untrained network of `kind` (a model kind of nn.configs, or a loss network)."""
    if kind in LOSS_NETWORK_KINDS:
        return LossNetworkConfig.from_dict(kind, config).build()
    return build_model(kind, config)


def _expected_tensors(kind: str, config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of `kind` on the meta device (shapes and dtypes, no memory)."""
    with torch.device("meta"):
        model = _build(kind, config)
    return dict(model.state_dict())


def check_config(kind: str, config: Any, name: str) -> None:
    """Raise ValueError (naming the file and the field) unless `config` is a valid stored config of `kind`."""
    try:
        if kind == "direction":
            shape = config.get("shape") if isinstance(config, Mapping) else None
            if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in shape):
                raise ValueError(f"config.shape must be a list of integers, got {shape!r}"[:200])
            check_direction_shape(shape, "config.shape")
        elif kind in LOSS_NETWORK_KINDS:
            LossNetworkConfig.from_dict(kind, config)
        else:
            config_from_dict(kind, config)
    except ValueError as e:
        raise ValueError(f"{name} has an invalid {KIND_TITLES.get(kind, kind)} config: {e}. Convert the .pt "
                         f"again.") from None


def check_strict(kind: str, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise ValueError unless `tensors` are exactly the tensors of `kind` with `config`: same keys and shapes,
    floating-point where the network has floating-point weights (an integer tensor would fail later in a raw
    RuntimeError)."""
    check_config(kind, config, name)
    bad = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{name}: entry {bad[0]!r} is a {type(tensors[bad[0]]).__name__}, not a tensor")
    if kind == "direction":
        if set(tensors) != {"direction"} or list(tensors["direction"].shape) != list(config["shape"]):
            raise ValueError(f"{name} is not a valid direction file "
                             f"(expected one tensor 'direction' {config['shape']})")
        return
    reference = _expected_tensors(kind, config)
    expected = {k: tuple(v.shape) for k, v in reference.items()}
    got = {k: tuple(v.shape) for k, v in tensors.items() if not (kind == "stylegan2" and k == "latent_avg")}
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    wrong = [f"{k} {list(got[k])} != {list(expected[k])}" for k in expected if k in got and got[k] != expected[k]]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:4]})")
        if wrong:
            parts.append(f"wrong shapes: {wrong[:4]}")
        raise ValueError(f"{name} does not match the {KIND_TITLES[kind]} architecture: " + "; ".join(parts))
    _check_dtypes(tensors, reference, name)


def _check_dtypes(tensors: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], name: str) -> None:
    for key, t in tensors.items():
        ref = reference.get(key)
        floating = ref.is_floating_point() if ref is not None else True     # stylegan2's latent_avg
        if floating and not t.is_floating_point():
            raise ValueError(f"{name}: tensor {key} has dtype {str(t.dtype).replace('torch.', '')}, but the network "
                             f"needs floating-point weights there. The file is damaged or not an official "
                             f"checkpoint; use the original download")


# Finiteness is checked this many bytes at a time: a whole-tensor torch.isfinite makes a bool copy of it (512 MB for
# the shared hypernet's w2), which was the peak of a whole inversion's memory (issue 14).
FINITE_CHUNK_BYTES = 1 << 24
_FLOAT_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def check_finite(tensors: Mapping[str, torch.Tensor], name: str) -> None:
    """Raise ValueError naming the first floating-point tensor that holds NaN or Inf values."""
    for key, t in tensors.items():
        if t.is_floating_point() and t.numel():
            flat = t.reshape(-1)
            step = max(1, FINITE_CHUNK_BYTES // t.element_size())
            if not all(bool(torch.isfinite(flat[i:i + step]).all()) for i in range(0, flat.numel(), step)):
                _raise_non_finite(name, key)


def check_finite_file(path: Path, header: Mapping[str, Any], name: str) -> None:
    """`check_finite` of a safetensors file's floating-point tensors, read in chunks through the page cache.

    Reading instead of touching the memory-mapped tensors keeps the check from paging the whole file into this
    process: weights the model never uses (the W-encoder file's decoder, 127 MB at 1024 px, when only the encoder
    runs) then never count against its memory.
    """
    entries = sorted((info["data_offsets"][0], info["data_offsets"][1], key, _FLOAT_DTYPES[info["dtype"]])
                     for key, info in header.items() if key != "__metadata__" and info.get("dtype") in _FLOAT_DTYPES)
    buffer = bytearray(FINITE_CHUNK_BYTES)
    with open(path, "rb", buffering=0) as f:
        data_start = _data_start(f)
        for start, end, key, dtype in entries:
            f.seek(data_start + start)
            remaining = end - start
            while remaining > 0:
                n = f.readinto(memoryview(buffer)[:min(remaining, FINITE_CHUNK_BYTES)])
                if not n:
                    raise ValueError(f"{name} is truncated inside tensor {key}; convert the .pt again")
                n -= n % dtype.itemsize
                if not bool(torch.isfinite(torch.frombuffer(buffer, dtype=dtype, count=n // dtype.itemsize)).all()):
                    _raise_non_finite(name, key)
                remaining -= n
                f.seek(data_start + end - remaining)


def _data_start(f: BinaryIO) -> int:
    """Where a safetensors file's tensor data begins: after the 8-byte header length and the header."""
    f.seek(0)
    return 8 + int.from_bytes(f.read(8), "little")


def _raise_non_finite(name: str, key: str) -> None:
    raise ValueError(f"{name}: tensor {key} holds NaN or Inf values; the weights are damaged (e.g. a diverged "
                     f"training run). Use the original download")


def instantiate(kind: str, config: Mapping[str, Any], tensors: dict[str, torch.Tensor], device: torch.device,
                 dtype: torch.dtype, name: str, finite_checked: bool = False, source: Path | None = None,
                 header: Mapping[str, Any] | None = None) -> nn.Module:
    """The model of `kind` holding `tensors` (strict keys and shapes; finite values unless `finite_checked`).

    Conv weights get their device's inference layout (nn.engine.layout); with the safetensors `source` and its
    `header`, the channels-last ones are read from the file instead of from the memory-mapped tensors.
    """
    check_strict(kind, config, tensors, name)
    if not finite_checked:
        check_finite(tensors, name)
    latent_avg = tensors.pop("latent_avg", None) if kind == "stylegan2" else None
    with torch.device("meta"):
        model = _build(kind, config)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.eval().requires_grad_(False)
    model = model.to(device=device, dtype=dtype)
    if kind == "stylegan2":
        model.latent_avg = None if latent_avg is None else latent_avg.to(device=device, dtype=dtype)
    read = None if source is None or header is None else functools.partial(read_channels_last, source, header)
    set_conv_weight_layout(model, plan_inference(device, dtype).conv_weight_format, read)
    return model


def read_channels_last(path: Path, header: Mapping[str, Any], key: str, like: torch.Tensor) -> torch.Tensor | None:
    """Tensor `key` of a safetensors file read into a channels-last copy of `like` ([out, in, kh, kw]), through the
    page cache rather than the file's memory map, so the mapped pages it replaces are never paged into this process;
    None when the file's tensor is not `like`'s dtype and shape (it was converted on loading: relay that instead)."""
    info = header.get(key)
    if not isinstance(info, Mapping) or _FLOAT_DTYPES.get(info.get("dtype")) != like.dtype \
            or list(info.get("shape", ())) != list(like.shape):
        return None
    start, end = info["data_offsets"]
    if end <= start:
        return None
    raw = bytearray(end - start)
    with open(path, "rb", buffering=0) as f:
        data_start = _data_start(f)
        f.seek(data_start + start)
        if f.readinto(raw) != len(raw):
            raise ValueError(f"{path.name} is truncated inside tensor {key}; convert the .pt again")
    plain = torch.frombuffer(raw, dtype=like.dtype).view(like.shape)
    return plain.contiguous(memory_format=torch.channels_last)


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """Kind, config, metadata and the parsed safetensors header of a converted file, without reading its tensors."""
    path = Path(path)
    header = read_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    found = format_name(meta)
    if found == "weight_deltas":
        raise ValueError(f"{path.name} holds weight deltas, not a model; load it with the Load Deltas node "
                         f"or WeightDeltas.load")
    if found != "checkpoint":
        described = f"it is a {FORMATS[found][1]}" if found else f"metadata format {meta.get('format')!r}"
        raise ValueError(f"{path.name} is a safetensors file but not one written by the hyperstyle_core converter "
                         f"({described}). "
                         "Convert the official .pt checkpoint with `python -m hyperstyle_core convert`.")
    check_format(meta, "checkpoint", path.name, "convert the .pt again")
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path.name} has unknown kind {meta.get('kind')!r}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError, RecursionError):      # RecursionError: crafted deep nesting
        raise ValueError(f"{path.name} has no readable architecture config. Convert the .pt again.") from None
    check_config(meta["kind"], config, path.name)       # before anything is built from it
    return {"kind": meta["kind"], "config": config, "metadata": meta, "header": header}


def wrong_kind_message(name: str, kind: str | None, expect: str) -> str:
    """What to say when file `name` holds `kind` (None: no model at all) where a model of kind `expect` is needed."""
    found = f"a {KIND_TITLES[kind]} file" if kind in KIND_TITLES else "not a converted model file"
    return (f"{name} is {found}, but a {KIND_TITLES[expect]} is needed here. Choose a {KIND_TITLES[expect]} file "
            f"(e.g. {DEFAULT_FILES[expect]}).")


def kind_of(obj: object) -> str | None:
    """The kind of an object `load` returned ("hyperstyle", "w_encoder", ..., "direction"), or None for others."""
    if isinstance(obj, LatentDirection):
        return "direction"
    if not isinstance(obj, nn.Module):
        return None
    if getattr(obj, "kind", None) in LOSS_NETWORK_KINDS:
        return obj.kind
    try:
        return config_of(obj).kind
    except ValueError:      # a network of some other kind
        return None


def check_kind(obj: object, expect: str, name: str) -> None:
    """Raise ValueError (see `wrong_kind_message`) unless `obj`, loaded from file `name`, is of kind `expect`; for
    callers that reuse loaded models (caches), where `load`'s own check did not run."""
    if kind_of(obj) != expect:
        raise ValueError(wrong_kind_message(name, kind_of(obj), expect))


def load(path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
         expect: str | None = None) -> nn.Module:
    """Build the model a converted safetensors file describes, with strict keys.

    Args:
        path: a file written by `convert`.
        device: "auto" / None (CUDA, then MPS, then CPU), or any torch device.
        dtype: float32 (default), float16 or bfloat16 (half precision needs a GPU).
        expect: optional kind the caller needs ("hyperstyle", "w_encoder", "restyle_e4e", "stylegan2", "direction").
    Returns:
        HyperStyleModel, WEncoderModel, ReStyleE4EModel or Generator, in eval mode without gradients (a
        LatentDirection for direction files; a network of nn.loss_networks for the loss-network kinds).
    """
    path = Path(path)
    info = read_info(path)
    kind, config = info["kind"], info["config"]
    if expect is not None and kind != expect:
        raise ValueError(wrong_kind_message(path.name, kind, expect))
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise ValueError(f"{path.name} could not be read ({e}); it is corrupt. Convert the .pt again.") from None
    if kind == "direction":
        check_strict(kind, config, tensors, path.name)
        return direction_from_tensor(tensors["direction"], path.stem)
    check_finite_file(path, info["header"], path.name)
    model = instantiate(kind, config, tensors, device, dtype, path.name, finite_checked=True, source=path,
                        header=info["header"])
    model.source_path = str(path)
    return model


def save_model(model: nn.Module, path: str | os.PathLike, source_name: str = "") -> Path:
    """Write a model built in memory (e.g. a tiny test model) in the converted-file format, atomically."""
    kind, config = model_config(model)
    tensors = dict(model.state_dict())
    if kind == "stylegan2" and getattr(model, "latent_avg", None) is not None:
        tensors["latent_avg"] = model.latent_avg
    return write_safetensors(path, tensors, "checkpoint", {"kind": kind, "config": json.dumps(config), "opts": "{}",
                                                           "source_name": source_name, "source_sha256": ""})
