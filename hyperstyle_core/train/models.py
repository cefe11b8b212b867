"""The networks of a training run: the HyperStyle model to train (new, or fine-tuned from a converted one), the frozen
W-encoder, and the official initialisation of a new hypernetwork.

Official new model (models/hyperstyle.py, hypernetworks/): the generator's weights and latent_avg (repeated over
the styles; estimated from 1e5 mapped samples when the generator file has none), the hypernetwork's ResNet34 from
torchvision's ImageNet weights (conv1's three extra input channels random), the shared hypernet
fmod(randn / 40, 2), every other layer PyTorch's default initialisation.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from ..io.checkpoints import load
from ..io.unpickle import read_official_checkpoint
from ..nn.hypernetwork import DEFAULT_LAYERS_TO_TUNE, HyperNetConfig
from ..nn.networks import HyperStyleModel, InputSpec, WEncoderModel, cars_input_spec
from ..nn.stylegan2 import Generator, modulated_layer_table

log = logging.getLogger(__name__)

DATASET_TYPES = {"faces": "ffhq_hypernet", "cars": "cars_hypernet", "other": "other_hypernet"}
MEAN_LATENT_SAMPLES = 100_000           # Generator.mean_latent(int(1e5)) in the coach
SHARED_INIT_STD = 1 / 40                # shared_weights_hypernet.py: fmod(randn / 40, 2)
RESNET_STAGES = (3, 4, 6, 3)            # torchvision resnet34 layer1..layer4 -> body.0..15


def parse_layers(text: str | None) -> tuple[int, ...]:
    """'0,2,3' -> (0, 2, 3); None or '' -> the official default."""
    if not text:
        return DEFAULT_LAYERS_TO_TUNE
    try:
        layers = tuple(int(t) for t in str(text).split(","))
    except ValueError:
        raise ValueError(f"layers to tune must be comma-separated generator layer indices like 0,2,3, got "
                         f"{text!r}") from None
    if any(i < 0 for i in layers) or len(set(layers)) != len(layers):
        raise ValueError(f"layers to tune must be distinct indices >= 0, got {text!r}")
    return layers


def load_w_encoder(path: str | os.PathLike, device: torch.device) -> WEncoderModel:
    """The frozen W-encoder (eval mode, no gradients)."""
    return load(path, device=device, expect="w_encoder").eval().requires_grad_(False)


def check_same_resolution(w_encoder: WEncoderModel, generator: Generator) -> None:
    if w_encoder.decoder.config.size != generator.config.size or \
            w_encoder.decoder.config.style_dim != generator.config.style_dim:
        raise ValueError(f"the W-encoder is for a {w_encoder.decoder.config.size}px generator but the generator is "
                         f"{generator.config.size}px; use a W-encoder and generator of the same resolution")


def new_model(generator: Generator, domain: str, layers: tuple[int, ...], seed: int = 0,
              backbone: str | os.PathLike | None = None) -> HyperStyleModel:
    """A new HyperStyle model around `generator`, initialised as the official training does."""
    n_layers = len(modulated_layer_table(generator.config))
    bad = [i for i in layers if i >= n_layers]
    if bad:
        raise ValueError(f"layers to tune {bad} do not exist: a {generator.config.size}px generator has layers "
                         f"0..{n_layers - 1}")
    torch.manual_seed(seed)     # PyTorch's default initialisation of every new layer, reproducibly
    spec = cars_input_spec(DATASET_TYPES[domain])
    model = HyperStyleModel(HyperNetConfig(generator.config, layers_to_tune=layers), spec)
    with torch.no_grad():
        for t in (model.hypernet.shared_weight_hypernet.w1, model.hypernet.shared_weight_hypernet.b1,
                  model.hypernet.shared_weight_hypernet.w2, model.hypernet.shared_weight_hypernet.b2):
            t.copy_(torch.fmod(torch.randn(t.shape) * SHARED_INIT_STD, 2))
    model.decoder.load_state_dict(generator.state_dict())
    model.latent_avg.copy_(_latent_avg(generator).expand_as(model.latent_avg))
    if backbone is not None:
        load_resnet34_backbone(model, backbone)
    else:
        log.warning("no ImageNet ResNet34 given (--backbone): the hypernetwork backbone starts from random weights; "
                    "the official training starts from torchvision's resnet34 ImageNet weights")
    return model


def _latent_avg(generator: Generator) -> torch.Tensor:
    avg = getattr(generator, "latent_avg", None)
    if avg is not None:
        return avg.reshape(-1, generator.config.style_dim)[0]
    log.info("the generator file has no latent_avg: estimating it from %d samples", MEAN_LATENT_SAMPLES)
    gen = torch.Generator().manual_seed(0)
    total = torch.zeros(generator.config.style_dim, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, MEAN_LATENT_SAMPLES, 10_000):
            z = torch.randn(10_000, generator.config.style_dim, generator=gen).to(generator.device, generator.dtype)
            total += generator.mapping(z).double().sum(0).cpu()
    return (total / MEAN_LATENT_SAMPLES).float()


def load_resnet34_backbone(model: HyperStyleModel, path: str | os.PathLike) -> None:
    """Copy torchvision's resnet34 state dict (resnet34-*.pth) into the hypernet: conv1 (RGB channels; the others
    random, as official), bn1, layer1..4 -> body.0..15."""
    hypernet = model.hypernet
    if model.config.generator.channel_divisor != 1:
        raise ValueError("an ImageNet backbone fits full-size models only")
    sd = read_official_checkpoint(Path(path))
    if not isinstance(sd, dict) or "layer1.0.conv1.weight" not in sd:
        raise ValueError(f"{Path(path).name} is not a torchvision resnet34 state dict (resnet34-b627a593.pth)")
    mapped = {}
    block = 0
    for stage, count in enumerate(RESNET_STAGES, start=1):
        for i in range(count):
            prefix = f"layer{stage}.{i}."
            mapped.update({f"body.{block}.{k[len(prefix):]}": v for k, v in sd.items() if k.startswith(prefix)})
            block += 1
    mapped.update({k: v for k, v in sd.items() if k.startswith("bn1.")})
    conv1 = torch.randn(hypernet.conv1.weight.shape)
    conv1[:, :3] = sd["conv1.weight"]
    mapped["conv1.weight"] = conv1
    own = hypernet.state_dict()
    wrong = [k for k, v in mapped.items() if k not in own or own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{Path(path).name} does not fit the hypernetwork backbone (first mismatch {wrong[0]}); "
                         f"use torchvision's resnet34 weights")
    hypernet.load_state_dict(mapped, strict=False)


def fine_tune_model(path: str | os.PathLike, generator: Generator | None, domain: str,
                    layers: tuple[int, ...] | None) -> HyperStyleModel:
    """A converted HyperStyle model to train further; with `generator`, its decoder is replaced by that one."""
    model = load(path, device="cpu", expect="hyperstyle")
    if layers is not None and tuple(layers) != tuple(model.config.layers_to_tune):
        raise ValueError(f"{Path(path).name} tunes layers {','.join(map(str, model.config.layers_to_tune))}; "
                         f"fine-tuning keeps them (leave out --layers)")
    if model.input_spec.is_cars != (domain == "cars"):
        raise ValueError(f"{Path(path).name} is a {'cars' if model.input_spec.is_cars else 'non-cars'} model but "
                         f"--domain is {domain}; use the matching domain")
    if generator is not None:
        if generator.config.to_json_dict() != model.decoder.config.to_json_dict():
            raise ValueError(f"the generator's architecture differs from {Path(path).name}'s decoder; use a "
                             f"generator of the same resolution and config")
        model.decoder.load_state_dict(generator.state_dict())
    return model


def input_spec_for(domain: str) -> InputSpec:
    return cars_input_spec(DATASET_TYPES[domain])
