"""Official checkpoints (.pt) -> converted safetensors files: layout detection and conversion.

The converter reads official `.pt` files with `torch.load(weights_only=True)` and an explicit allow-list
(io.unpickle); it never unpickles arbitrary objects. Official keys are kept (aliases of the shared hypernetwork
dropped after checking them), so a converted file loads with strict keys and no renaming. The training loss networks
keep only what the official criteria/ run (LOSS_NETWORK_LAYOUTS; MoCo's `module.encoder_q.` prefix is removed).
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ..devices import resolve_device, resolve_dtype
from ..nn.configs import (MAX_SIZE, HyperStyleConfig, ReStyleE4EConfig, StyleGAN2Config, WEncoderConfig,
                          generator_config_from_dict)
from ..nn.loss_networks import LossNetworkConfig
from ..nn.networks import cars_input_spec
from ..nn.stylegan2 import GeneratorConfig
from .checkpoints import check_finite, check_strict, instantiate
from .directions import direction_from_tensor
from .files import sha256_file
from .formats import write_safetensors
from .registry import KINDS
from .unpickle import MAX_NESTING, read_official_checkpoint

log = logging.getLogger(__name__)

SHARED_ALIAS = re.compile(r"^hypernet\.refinement_blocks\.\d+\.hypernet\.(w1|b1|w2|b2)$")
MAX_OPTS_ENTRIES = 10_000       # the official opts have about 60; far more only comes from a crafted file
# The loss networks of training in their original files: kind -> (keys that identify it, the prefix of the keys
# kept (removed from them), kept keys that are dropped). Parts the official criteria/ never run are not converted:
# AlexNet's classifier (LPIPS uses .features), MoCo's fc head, key encoder and queue (moco_loss.py keeps encoder_q).
LOSS_NETWORK_LAYOUTS: dict[str, tuple[tuple[str, ...], str, tuple[str, ...]]] = {
    "ir_se50": (("input_layer.0.weight", "output_layer.3.weight"), "", ()),
    "alexnet": (("features.0.weight", "features.10.weight"), "", ("classifier.",)),
    "lpips_alex_lin": (("lin0.model.1.weight", "lin4.model.1.weight"), "", ()),
    "moco_v2": (("module.encoder_q.conv1.weight", "module.encoder_q.layer4.2.bn3.weight"), "module.encoder_q.",
                ("fc.",)),
}


@dataclass
class Detected:
    kind: str
    tensors: dict[str, torch.Tensor]     # our keys (official keys; aliases removed)
    config: dict[str, Any]               # architecture config, stored as JSON metadata
    opts: dict[str, Any]


def _weight(sd: Mapping[str, torch.Tensor], key: str, ndim: int, source_name: str) -> torch.Tensor:
    """sd[key], which the layout needs as a weight of `ndim` dimensions; a ValueError naming the file otherwise."""
    t = sd.get(key)
    if t is None:
        raise ValueError(f"{source_name}: tensor {key} is missing; the checkpoint is incomplete or not an official "
                         f"one. Use the original download")
    if t.ndim != ndim:
        raise ValueError(f"{source_name}: tensor {key} has shape {list(t.shape)}; expected a {ndim}-D weight. The "
                         f"checkpoint is damaged or not an official one")
    return t


def _tensors_of(container: Mapping[Any, Any]) -> dict[str, torch.Tensor]:
    """The tensor entries with string keys (training checkpoints also hold step counters, args, ...)."""
    return {k: v for k, v in container.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}


def _generator_config(sd: Mapping[str, torch.Tensor], prefix: str, source_name: str,
                      output_crop: bool = False) -> GeneratorConfig:
    blocks = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"to_rgbs\.(\d+)\.bias$", k))}
    mlp = {int(m.group(1)) for k in sd if (m := re.match(re.escape(prefix) + r"style\.(\d+)\.weight$", k))}
    if not blocks or not mlp:
        raise ValueError(f"{source_name}: no StyleGAN2 generator under '{prefix}' (found no to_rgbs.* / style.* "
                         f"keys)")
    max_blocks = int(math.log2(MAX_SIZE)) - 2
    if len(blocks) > max_blocks:
        raise ValueError(f"{source_name}: the generator has {len(blocks)} to_rgbs blocks; StyleGAN2 generators "
                         f"up to {MAX_SIZE} px have at most {max_blocks}. The checkpoint is damaged or not supported")
    size = 2 ** (len(blocks) + 2)
    style_dim = _weight(sd, f"{prefix}style.1.weight", 2, source_name).shape[1]
    # Channel multiplier from the first 64px conv (256 * multiplier channels).
    key64 = f"{prefix}convs.6.conv.weight"
    multiplier = _weight(sd, key64, 5, source_name).shape[1] // 256 if key64 in sd else 2
    crop = [size // 8, size - size // 8] if output_crop else None
    stored = {"size": size, "style_dim": style_dim, "n_mlp": len(mlp), "channel_multiplier": multiplier,
              "output_crop": crop}
    try:
        return generator_config_from_dict(stored, f"{prefix}generator" if prefix else "generator")
    except ValueError as e:
        raise ValueError(f"{source_name}: the generator found is not a supported StyleGAN2 ({e})") from None


def _opts_dict(opts: Any, source_name: str) -> dict[str, Any]:
    if opts is None:
        return {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        return {}
    _check_opts_size(opts, source_name)
    return json.loads(json.dumps(dict(opts), default=str))


def _check_opts_size(opts: Mapping[str, Any], source_name: str) -> None:
    """Refuse opts nested deeper than MAX_NESTING or with more than MAX_OPTS_ENTRIES values (counted per visit,
    so shared or cyclic sub-containers count every time, as JSON would write them)."""
    stack, visits = [(opts, 0)], 0
    while stack:
        value, depth = stack.pop()
        visits += 1
        if depth > MAX_NESTING or visits > MAX_OPTS_ENTRIES:
            raise ValueError(f"{source_name}: its 'opts' are nested more than {MAX_NESTING} levels deep or hold "
                             f"more than {MAX_OPTS_ENTRIES} values; official checkpoints have a flat dict of options. "
                             f"The file is damaged or crafted")
        if isinstance(value, argparse.Namespace):
            value = vars(value)
        if isinstance(value, Mapping):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend((v, depth + 1) for v in value)


def _dedupe_shared(sd: dict[str, torch.Tensor], source_name: str) -> dict[str, torch.Tensor]:
    """Drop the 9 aliases of the shared hypernet (the official state dict lists it 10 times) after checking them."""
    out = {}
    for key, t in sd.items():
        m = SHARED_ALIAS.match(key)
        if m:
            canonical = sd.get(f"hypernet.shared_weight_hypernet.{m.group(1)}")
            if canonical is None or canonical.shape != t.shape or canonical.dtype != t.dtype or not (
                    canonical.data_ptr() == t.data_ptr() or torch.equal(canonical, t)):
                raise ValueError(f"{source_name}: {key} should alias hypernet.shared_weight_hypernet.{m.group(1)} "
                                 f"but differs; the checkpoint is damaged or not an official one")
            continue
        out[key] = t
    return out


def detect(checkpoint: Mapping[str, Any], source_name: str = "") -> Detected:
    """Recognise an official checkpoint layout.

    Raises:
        ValueError naming the file and the problem: an unknown layout (listing the known kinds), a tensor the layout
        needs missing or of the wrong rank, a generator size or width no StyleGAN2 has, or crafted `opts`.
    """
    name = source_name or "checkpoint"
    if isinstance(checkpoint, torch.Tensor):
        direction = direction_from_tensor(checkpoint, name)
        return Detected("direction", {"direction": direction.vector}, {"shape": list(direction.vector.shape)}, {})
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"{name} holds a {type(checkpoint).__name__}, not a dict of weights")
    opts = _opts_dict(checkpoint.get("opts"), name)
    dataset_type = str(opts.get("dataset_type", ""))
    if not dataset_type and re.search(r"(^|[^a-z])cars?([^a-z]|$)", source_name.lower()):
        dataset_type = "cars_encode"
    cars = "cars" in dataset_type

    if isinstance(checkpoint.get("g_ema"), Mapping) or "conv1.conv.weight" in checkpoint:
        g_ema = checkpoint.get("g_ema")
        sd = _tensors_of(g_ema) if isinstance(g_ema, Mapping) else {k: v for k, v in _tensors_of(checkpoint).items()
                                                                    if k != "latent_avg"}
        config = _generator_config(sd, "", name, output_crop=cars)
        if isinstance(checkpoint.get("latent_avg"), torch.Tensor):
            sd["latent_avg"] = checkpoint["latent_avg"]
        return Detected("stylegan2", sd, StyleGAN2Config(config).to_dict(), opts)

    sd_obj = checkpoint.get("state_dict", checkpoint)
    if not isinstance(sd_obj, Mapping):
        raise _unknown_layout(checkpoint, source_name)
    sd = _tensors_of(sd_obj)
    loss_network = _loss_network(sd)
    if loss_network is not None:
        return loss_network

    if any(k.startswith("hypernet.") for k in sd):
        sd = {k: v for k, v in sd.items() if not k.startswith("w_encoder.")}
        sd = _dedupe_shared(sd, name)
        gen = _generator_config(sd, "decoder.", name, output_crop=cars)
        tuned = sorted({int(m.group(1)) for k in sd
                        if (m := re.match(r"hypernet\.refinement_blocks\.(\d+)\.", k))})
        variant = "separable" if any(".output.0.make_kernel_in." in k for k in sd) else "shared"
        _compare_stated_layers(opts, tuned, gen)
        input_nc = int(_weight(sd, "hypernet.conv1.weight", 4, name).shape[1])
        sd["latent_avg"] = _latent_avg(checkpoint, name, "HyperStyle")
        spec = cars_input_spec(dataset_type or "ffhq_hypernet")
        config = HyperStyleConfig(gen, tuple(tuned), variant, input_nc, spec).to_dict()
        return Detected("hyperstyle", sd, config, opts)

    if any(k.startswith("encoder.") for k in sd) and any(k.startswith("decoder.") for k in sd):
        gen = _generator_config(sd, "decoder.", name, output_crop=cars)
        sd["latent_avg"] = _latent_avg(checkpoint, name, "encoder")
        spec = cars_input_spec(dataset_type or "ffhq_encode")
        if any(k.startswith("encoder.styles.") for k in sd):
            n_styles = len({k.split(".")[2] for k in sd if k.startswith("encoder.styles.")})
            if n_styles != gen.n_latent:
                raise ValueError(f"{name}: e4e encoder has {n_styles} style blocks but its generator needs "
                                 f"{gen.n_latent}")
            input_nc = int(_weight(sd, "encoder.input_layer.0.weight", 4, name).shape[1])
            return Detected("restyle_e4e", sd, ReStyleE4EConfig(gen, spec, input_nc).to_dict(), opts)
        if "encoder.linear.weight" in sd:
            return Detected("w_encoder", sd, WEncoderConfig(gen, spec).to_dict(), opts)
    raise _unknown_layout(checkpoint, source_name)


def _loss_network(sd: Mapping[str, torch.Tensor]) -> Detected | None:
    """A loss network of LOSS_NETWORK_LAYOUTS with its keys as our network has them, or None."""
    for kind, (identifying, prefix, dropped) in LOSS_NETWORK_LAYOUTS.items():
        if all(k in sd for k in identifying):
            kept = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
            kept = {k: v for k, v in kept.items() if not k.startswith(dropped)}
            return Detected(kind, kept, LossNetworkConfig(kind).to_dict(), {})
    return None


def _latent_avg(checkpoint: Mapping[str, Any], name: str, what: str) -> torch.Tensor:
    latent_avg = checkpoint.get("latent_avg")
    if not isinstance(latent_avg, torch.Tensor):
        found = "is missing" if latent_avg is None else f"is a {type(latent_avg).__name__}"
        raise ValueError(f"{name}: the {what} checkpoint's latent_avg {found}; expected a tensor [n_latent, 512]")
    return latent_avg


def _compare_stated_layers(opts: Mapping[str, Any], tuned: list[int], gen: GeneratorConfig) -> None:
    """Warn when opts.layers_to_tune disagrees with the refinement blocks present (the blocks are what counts)."""
    if not opts.get("layers_to_tune"):
        return
    try:
        stated = [int(x) for x in str(opts["layers_to_tune"]).split(",") if x.strip()]
    except ValueError:
        log.warning("opts.layers_to_tune %.80r is not a list of indices; using the refinement blocks present",
                    opts["layers_to_tune"])
        return
    stated = [i for i in stated if i < 3 * (gen.log_size - 2) + 2]  # indices past the size are dropped
    if stated != tuned:
        log.warning("opts.layers_to_tune %s differs from the refinement blocks present %s; using the blocks",
                    stated, tuned)


def _unknown_layout(checkpoint: Mapping[str, Any], source_name: str) -> ValueError:
    keys = [_short(k) for k in list(checkpoint.keys())[:12]]
    inner = checkpoint.get("state_dict")
    inner_keys = [_short(k) for k in list(inner.keys())[:8]] if isinstance(inner, Mapping) else []
    kinds = "\n".join(f"  - {k}: {v}" for k, v in KINDS.items())
    return ValueError(f"{source_name or 'checkpoint'} has an unrecognised layout. Top-level keys: {keys}"
                      + (f"; first state_dict keys: {inner_keys}" if inner_keys else "")
                      + f". Known kinds:\n{kinds}")


def _short(key: Any) -> Any:
    """A key as shown in messages: long strings cut (a crafted file can have megabyte keys)."""
    return key[:80] + "..." if isinstance(key, str) and len(key) > 80 else key


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
    check_strict(detected.kind, detected.config, detected.tensors, src.name)
    check_finite(detected.tensors, src.name)
    tensors = {k: v.contiguous() for k, v in detected.tensors.items()}
    write_safetensors(dst, tensors, "checkpoint", {
        "kind": detected.kind, "config": json.dumps(detected.config), "opts": json.dumps(detected.opts),
        "source_name": src.name, "source_sha256": sha256_file(src)})
    log.info("converted %s (%s) -> %s", src.name, detected.kind, dst)
    return dst


def from_checkpoint(checkpoint: Mapping[str, Any], device: str | torch.device | None = "cpu",
                    dtype: torch.dtype | str | None = None, name: str = "checkpoint") -> nn.Module:
    """Build a model straight from an in-memory official checkpoint dict (benchmarks, tests); no file involved."""
    detected = detect(checkpoint, name)
    return instantiate(detected.kind, detected.config, dict(detected.tensors), resolve_device(device),
                        resolve_dtype(dtype, resolve_device(device)), name)


