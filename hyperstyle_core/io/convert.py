"""Official checkpoints (.pt) -> converted safetensors files: layout detection and conversion.

The converter reads official `.pt` files with `torch.load(weights_only=True)` and an explicit allow-list
(io.unpickle); it never unpickles arbitrary objects. Official keys are kept (aliases of the shared hypernetwork
dropped after checking them), so a converted file loads with strict keys and no renaming.
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

from ..devices import resolve_device, resolve_dtype
from ..nn.configs import HyperStyleConfig, ReStyleE4EConfig, StyleGAN2Config, WEncoderConfig
from ..nn.networks import cars_input_spec
from ..nn.stylegan2 import GeneratorConfig
from .checkpoints import KINDS, check_strict, instantiate
from .directions import direction_from_tensor
from .files import sha256_file
from .formats import write_safetensors
from .unpickle import read_official_checkpoint

log = logging.getLogger(__name__)

SHARED_ALIAS = re.compile(r"^hypernet\.refinement_blocks\.\d+\.hypernet\.(w1|b1|w2|b2)$")


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
        return Detected("stylegan2", sd, StyleGAN2Config(config).to_dict(), opts)

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
        config = HyperStyleConfig(gen, tuple(tuned), variant, int(sd["hypernet.conv1.weight"].shape[1]), spec).to_dict()
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
            config = ReStyleE4EConfig(gen, spec, int(sd["encoder.input_layer.0.weight"].shape[1])).to_dict()
            return Detected("restyle_e4e", sd, config, opts)
        if "encoder.linear.weight" in sd:
            return Detected("w_encoder", sd, WEncoderConfig(gen, spec).to_dict(), opts)
    raise _unknown_layout(checkpoint, source_name)


def _unknown_layout(checkpoint: Mapping[str, Any], source_name: str) -> ValueError:
    keys = list(checkpoint.keys())
    inner = checkpoint.get("state_dict")
    inner_keys = list(inner.keys())[:8] if isinstance(inner, Mapping) else []
    kinds = "\n".join(f"  - {k}: {v}" for k, v in KINDS.items())
    return ValueError(f"{source_name or 'checkpoint'} has an unrecognised layout. Top-level keys: {keys[:12]}"
                      + (f"; first state_dict keys: {inner_keys}" if inner_keys else "")
                      + f". Known kinds:\n{kinds}")


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


