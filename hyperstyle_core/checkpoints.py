"""Official checkpoints -> safetensors (convert), and safetensors -> models (load).

Runtime loading reads safetensors only. The converter reads official `.pt` files with
`torch.load(weights_only=True)` and an explicit allow-list; it never unpickles arbitrary objects.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .hypernetwork import HyperNetConfig, VARIANTS
from .io_utils import atomic_path, read_safetensors_header, sha256_file
from .models import HyperStyleModel, InputSpec, ReStyleE4EModel, WEncoderModel, cars_input_spec
from .stylegan2 import Generator, GeneratorConfig

log = logging.getLogger(__name__)

FORMAT = "hyperstyle_core.checkpoint"
FORMAT_VERSION = "1"
KINDS = {
    "hyperstyle": "HyperStyle model (hyperstyle_ffhq.pt, hyperstyle_cars.pt, hyperstyle_afhq_wild.pt): "
                  "'state_dict' with hypernet.* + decoder.*, and latent_avg",
    "w_encoder": "pSp W-encoder (faces_w_encoder.pt, cars_w_encoder.pt, afhq_wild_w_encoder.pt): "
                 "'state_dict' with encoder.* (IR-SE50 + linear) + decoder.*",
    "restyle_e4e": "ReStyle e4e encoder (restyle_e4e_ffhq_encode.pt): 'state_dict' with encoder.styles.* + decoder.*",
    "stylegan2": "rosinality StyleGAN2 generator (stylegan2-ffhq-config-f.pt, toonify, StyleGAN-NADA, ...): 'g_ema'",
    "direction": "InterFaceGAN latent direction (age.pt, smile.pt [1, 512]; pose.pt [1, 18, 512]): a bare tensor",
}
KIND_TITLES = {"hyperstyle": "HyperStyle model", "w_encoder": "W-encoder", "restyle_e4e": "ReStyle-e4e encoder",
               "stylegan2": "StyleGAN2 generator", "direction": "latent direction"}
# Objects a training checkpoint may carry besides tensors and builtins (rosinality keeps its argparse args).
ALLOWED_GLOBALS = [argparse.Namespace]
SHARED_ALIAS = re.compile(r"^hypernet\.refinement_blocks\.\d+\.hypernet\.(w1|b1|w2|b2)$")


# ----------------------------------------------------------------------------------------------- layout detection

@dataclass
class Detected:
    kind: str
    tensors: dict[str, torch.Tensor]     # our keys (official keys; aliases removed)
    config: dict[str, Any]               # architecture config, stored as JSON metadata
    opts: dict[str, Any]


def _generator_config(sd: Mapping[str, torch.Tensor], prefix: str, output_crop=None) -> GeneratorConfig:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"to_rgbs\.(\d+)\.bias$", k))}
    mlp = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"style\.(\d+)\.weight$", k))}
    if not blocks or not mlp:
        raise ValueError(f"no StyleGAN2 generator under '{prefix}' (found no to_rgbs.* / style.* keys)")
    size = 2 ** (len(blocks) + 2)
    style_dim = sd[f"{prefix}style.1.weight"].shape[1]
    # Channel multiplier from the first 64px conv (256 * multiplier channels).
    key64 = f"{prefix}convs.6.conv.weight"
    multiplier = sd[key64].shape[1] // 256 if key64 in sd else 2
    crop = (size // 8, size - size // 8) if output_crop else None
    return GeneratorConfig(size=size, style_dim=style_dim, n_mlp=len(mlp), channel_multiplier=multiplier,
                           output_crop=crop)


def _opts_dict(opts: Any) -> dict[str, Any]:
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        return {}
    return json.loads(json.dumps(dict(opts), default=str))


def _dedupe_shared(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the 9 aliases of the shared hypernet (the official state dict lists it 10 times) after checking them."""
    out = {}
    for key, t in sd.items():
        m = SHARED_ALIAS.match(key)
        if m:
            canonical = sd.get(f"hypernet.shared_weight_hypernet.{m.group(1)}")
            if canonical is None or canonical.shape != t.shape or not (
                    canonical.data_ptr() == t.data_ptr() or torch.equal(canonical, t)):
                raise ValueError(f"{key} should alias hypernet.shared_weight_hypernet.{m.group(1)} but differs")
            continue
        out[key] = t
    return out


def detect(checkpoint: Mapping[str, Any], source_name: str = "") -> Detected:
    """Recognise an official checkpoint layout. Raises ValueError listing the known kinds otherwise."""
    if isinstance(checkpoint, torch.Tensor):
        from .editing import direction_from_tensor
        direction = direction_from_tensor(checkpoint, source_name)
        return Detected("direction", {"direction": direction.vector}, {"shape": list(direction.vector.shape)}, {})
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{source_name or 'checkpoint'} holds a {type(checkpoint).__name__}, not a dict of weights")
    opts = _opts_dict(checkpoint.get("opts"))
    dataset_type = str(opts.get("dataset_type", ""))
    if not dataset_type and re.search(r"(^|[^a-z])cars?([^a-z]|$)", source_name.lower()):
        dataset_type = "cars_encode"
    top_tensors = {k: v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}

    if isinstance(checkpoint.get("g_ema"), Mapping) or "conv1.conv.weight" in checkpoint:
        sd = dict(checkpoint["g_ema"]) if "g_ema" in checkpoint else {k: v for k, v in top_tensors.items()
                                                                     if k != "latent_avg"}
        config = _generator_config(sd, "", output_crop="cars" in dataset_type)
        if isinstance(checkpoint.get("latent_avg"), torch.Tensor):
            sd["latent_avg"] = checkpoint["latent_avg"]
        return Detected("stylegan2", sd, {"generator": config.to_json_dict()}, opts)

    sd_obj = checkpoint.get("state_dict", checkpoint)
    if not isinstance(sd_obj, Mapping):
        raise _unknown_layout(checkpoint, source_name)
    sd = {k: v for k, v in sd_obj.items() if isinstance(v, torch.Tensor)}
    latent_avg = checkpoint.get("latent_avg")

    if any(k.startswith("hypernet.") for k in sd):
        sd = {k: v for k, v in sd.items() if not k.startswith("w_encoder.")}
        sd = _dedupe_shared(sd)
        gen = _generator_config(sd, "decoder.", output_crop="cars" in dataset_type)
        tuned = sorted({int(m.group(1)) for k in sd
                        if (m := re.match(r"hypernet\.refinement_blocks\.(\d+)\.", k))})
        variant = "separable" if any(".output.0.make_kernel_in." in k for k in sd) else "shared"
        if opts.get("layers_to_tune"):
            stated = [int(x) for x in str(opts["layers_to_tune"]).split(",") if x.strip()]
            stated = [i for i in stated if i < 3 * (gen.log_size - 2) + 2]  # indices past the size are dropped
            if stated != tuned:
                log.warning("opts.layers_to_tune %s differs from the refinement blocks present %s; using the blocks",
                            stated, tuned)
        if latent_avg is None:
            raise ValueError(f"{source_name}: HyperStyle checkpoint has no latent_avg")
        sd["latent_avg"] = latent_avg
        spec = cars_input_spec(dataset_type or "ffhq_hypernet")
        config = {"generator": gen.to_json_dict(), "layers_to_tune": tuned, "variant": variant,
                  "input_nc": int(sd["hypernet.conv1.weight"].shape[1]), "input": spec.to_json_dict()}
        return Detected("hyperstyle", sd, config, opts)

    if any(k.startswith("encoder.") for k in sd) and any(k.startswith("decoder.") for k in sd):
        gen = _generator_config(sd, "decoder.", output_crop="cars" in dataset_type)
        if latent_avg is None:
            raise ValueError(f"{source_name}: encoder checkpoint has no latent_avg")
        sd["latent_avg"] = latent_avg
        spec = cars_input_spec(dataset_type or "ffhq_encode")
        if any(k.startswith("encoder.styles.") for k in sd):
            n_styles = len({k.split(".")[2] for k in sd if k.startswith("encoder.styles.")})
            if n_styles != gen.n_latent:
                raise ValueError(f"{source_name}: e4e encoder has {n_styles} style blocks but its generator needs "
                                 f"{gen.n_latent}")
            config = {"generator": gen.to_json_dict(), "input": spec.to_json_dict(),
                      "input_nc": int(sd["encoder.input_layer.0.weight"].shape[1])}
            return Detected("restyle_e4e", sd, config, opts)
        if "encoder.linear.weight" in sd:
            return Detected("w_encoder", sd, {"generator": gen.to_json_dict(), "input": spec.to_json_dict()}, opts)
    raise _unknown_layout(checkpoint, source_name)


def _unknown_layout(checkpoint: Mapping[str, Any], source_name: str) -> ValueError:
    keys = list(checkpoint.keys())
    inner = checkpoint.get("state_dict")
    inner_keys = list(inner.keys())[:8] if isinstance(inner, Mapping) else []
    kinds = "\n".join(f"  - {k}: {v}" for k, v in KINDS.items())
    return ValueError(f"{source_name or 'checkpoint'} has an unrecognised layout. Top-level keys: {keys[:12]}"
                      + (f"; first state_dict keys: {inner_keys}" if inner_keys else "")
                      + f". Known kinds:\n{kinds}")


# ----------------------------------------------------------------------------------------------- model building

def build_model(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """An untrained model of `kind` from its architecture config (use under torch.device('meta') to skip init)."""
    gen = GeneratorConfig.from_json_dict(config["generator"])
    if kind == "stylegan2":
        return Generator(gen)
    spec = InputSpec.from_json_dict(config["input"])
    if kind == "hyperstyle":
        variant = config.get("variant", "shared")
        if variant not in VARIANTS:
            raise ValueError(f"unknown hypernetwork variant {variant!r}")
        hconf = HyperNetConfig(gen, tuple(config["layers_to_tune"]), variant, int(config.get("input_nc", 6)))
        return HyperStyleModel(hconf, spec)
    if kind == "w_encoder":
        return WEncoderModel(gen, spec)
    if kind == "restyle_e4e":
        return ReStyleE4EModel(gen, spec, int(config.get("input_nc", 6)))
    raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(KINDS)}")


def _expected_keys(kind: str, config: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_model(kind, config)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_strict(kind: str, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], name: str) -> None:
    if kind == "direction":
        if set(tensors) != {"direction"} or list(tensors["direction"].shape) != list(config["shape"]):
            raise ValueError(f"{name} is not a valid direction file (expected one tensor 'direction' {config['shape']})")
        return
    expected = _expected_keys(kind, config)
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


# ----------------------------------------------------------------------------------------------- convert

def read_official_checkpoint(path: str | os.PathLike) -> dict:
    """torch.load with weights_only=True and an explicit allow-list (never a plain unpickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear message
        if isinstance(e, (FileNotFoundError, MemoryError)):
            raise
        raise ValueError(f"Cannot read {path.name} as a PyTorch checkpoint with the safe loader: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. It may be truncated "
                         f"(download it again) or contain objects outside the allow-list "
                         f"({', '.join(g.__module__ + '.' + g.__qualname__ for g in ALLOWED_GLOBALS)}).") from None


def convert(src: str | os.PathLike, out_dir: str | os.PathLike | None = None, overwrite: bool = True) -> Path:
    """Convert an official checkpoint to `<out_dir>/<stem>.safetensors` (default: beside the source).

    Returns the written path. The file carries metadata: format, kind, architecture config (JSON), the official
    opts (JSON) and the sha256 of the source. Running it twice gives the same file.
    """
    src = Path(src)
    out_dir = Path(out_dir) if out_dir is not None else src.parent
    dst = out_dir / f"{src.stem}.safetensors"
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True (CLI: --overwrite)")
    if src.suffix == ".safetensors":
        raise ValueError(f"{src.name} is already a safetensors file; load it directly")
    checkpoint = read_official_checkpoint(src)
    detected = detect(checkpoint, src.name)
    _check_strict(detected.kind, detected.config, detected.tensors, src.name)
    metadata = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "kind": detected.kind,
        "config": json.dumps(detected.config), "opts": json.dumps(detected.opts),
        "source_name": src.name, "source_sha256": sha256_file(src),
    }
    from safetensors.torch import save_file
    tensors = {k: v.contiguous() for k, v in detected.tensors.items()}
    with atomic_path(dst) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    log.info("converted %s (%s) -> %s", src.name, detected.kind, dst)
    return dst


# ----------------------------------------------------------------------------------------------- load

def from_checkpoint(checkpoint: Mapping[str, Any], device: str | torch.device | None = "cpu",
                    dtype: torch.dtype | str | None = None, name: str = "checkpoint") -> nn.Module:
    """Build a model straight from an in-memory official checkpoint dict (benchmarks, tests); no file involved."""
    from .devices import resolve_device, resolve_dtype

    detected = detect(checkpoint, name)
    return _instantiate(detected.kind, detected.config, dict(detected.tensors), resolve_device(device),
                        resolve_dtype(dtype, resolve_device(device)), name)


def _instantiate(kind: str, config: Mapping[str, Any], tensors: dict[str, torch.Tensor], device: torch.device,
                 dtype: torch.dtype, name: str) -> nn.Module:
    _check_strict(kind, config, tensors, name)
    latent_avg = tensors.pop("latent_avg", None) if kind == "stylegan2" else None
    with torch.device("meta"):
        model = build_model(kind, config)
    model.load_state_dict(tensors, strict=True, assign=True)
    model.eval().requires_grad_(False)
    model = model.to(device=device, dtype=dtype)
    if kind == "stylegan2":
        model.latent_avg = None if latent_avg is None else latent_avg.to(device=device, dtype=dtype)
    return model


def read_info(path: str | os.PathLike) -> dict[str, Any]:
    """Kind, config and metadata of a converted file without reading its tensors."""
    path = Path(path)
    header = read_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    if meta.get("format") != FORMAT:
        if meta.get("format") == "hyperstyle.weight_deltas":
            raise ValueError(f"{path.name} holds weight deltas, not a model; load it with the Load Deltas node "
                             f"or WeightDeltas.load")
        raise ValueError(f"{path.name} is a safetensors file but not one written by the hyperstyle_core converter "
                         f"(metadata format {meta.get('format')!r}). Convert the official .pt checkpoint with "
                         f"`python -m hyperstyle_core convert`.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path.name} was written by converter format {meta.get('format_version')}; this version "
                         f"reads {FORMAT_VERSION}. Convert the .pt again.")
    if meta.get("kind") not in KINDS:
        raise ValueError(f"{path.name} has unknown kind {meta.get('kind')!r}")
    try:
        config = json.loads(meta["config"])
    except (KeyError, json.JSONDecodeError):
        raise ValueError(f"{path.name} has no readable architecture config. Convert the .pt again.") from None
    return {"kind": meta["kind"], "config": config, "metadata": meta}


def load(path: str | os.PathLike, device: str | torch.device | None = None, dtype: torch.dtype | str | None = None,
         expect: str | None = None) -> nn.Module:
    """Build the model a converted safetensors file describes, with strict keys.

    Args:
        path: a file written by `convert`.
        device: "auto" / None (CUDA, then MPS, then CPU), or any torch device.
        dtype: float32 (default), float16 or bfloat16 (half precision needs a GPU).
        expect: optional kind the caller needs ("hyperstyle", "w_encoder", "restyle_e4e", "stylegan2").
    Returns:
        HyperStyleModel, WEncoderModel, ReStyleE4EModel or Generator, in eval mode without gradients.
    """
    from safetensors import safe_open
    from .devices import resolve_device, resolve_dtype

    path = Path(path)
    info = read_info(path)
    kind, config = info["kind"], info["config"]
    if expect is not None and kind != expect:
        raise ValueError(f"{path.name} is a {KIND_TITLES[kind]} file, but a {KIND_TITLES[expect]} is needed here. "
                         f"Choose a {KIND_TITLES[expect]} file (e.g. {_example_file(expect)}).")
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error type
        raise ValueError(f"{path.name} could not be read ({e}); it is corrupt. Convert the .pt again.") from None
    if kind == "direction":
        from .editing import direction_from_tensor
        _check_strict(kind, config, tensors, path.name)
        return direction_from_tensor(tensors["direction"], path.stem)
    model = _instantiate(kind, config, tensors, device, dtype, path.name)
    model.source_path = str(path)
    return model


def save_model(model: nn.Module, path: str | os.PathLike, source_name: str = "") -> Path:
    """Write a model built in memory (e.g. a tiny test model) in the converted-file format, atomically."""
    from safetensors.torch import save_file
    from .models import model_config

    kind, config = model_config(model)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if kind == "stylegan2" and getattr(model, "latent_avg", None) is not None:
        tensors["latent_avg"] = model.latent_avg.detach().cpu().contiguous()
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "config": json.dumps(config),
                "opts": "{}", "source_name": source_name, "source_sha256": ""}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def _example_file(kind: str) -> str:
    return {"hyperstyle": "hyperstyle_ffhq.safetensors", "w_encoder": "faces_w_encoder.safetensors",
            "restyle_e4e": "restyle_e4e_ffhq_encode.safetensors",
            "stylegan2": "stylegan2-ffhq-config-f.safetensors", "direction": "age.safetensors"}[kind]
