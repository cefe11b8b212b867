"""Typed architecture configs, one per loadable model kind, defined once.

A converted file stores its kind and `config.to_dict()` as JSON metadata; `config_from_dict` reads it back,
`config.build()` makes the untrained network and `config_of(model)` describes a network in memory. The converter
(io.convert), the loader (io.checkpoints) and `save_model` all go through these classes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import nn

from .hypernetwork import VARIANTS, HyperNetConfig
from .networks import HyperStyleModel, InputSpec, ReStyleE4EModel, WEncoderModel
from .stylegan2 import CHANNELS_BASE, Generator, GeneratorConfig

# What the architecture supports. A stored config outside these bounds is refused before anything is built: the
# values come from file metadata, and e.g. n_mlp=3000000 would otherwise build modules until memory runs out.
MIN_SIZE, MAX_SIZE = 8, max(CHANNELS_BASE)      # CHANNELS_BASE has channel widths up to 1024 px
MAX_STYLE_DIM = 4096                            # official models use 512
MAX_N_MLP = 32                                  # official 8
MAX_CHANNEL_MULTIPLIER = 8                      # config-f uses 2
MAX_CHANNEL_DIVISOR = 64                        # tiny test models; the encoders' 64-channel stems allow no more
MAX_INPUT_NC = 64                               # official 6 (image + reconstruction)
MAX_INPUT_SIDE = 4096                           # encoder input height / width; official 256 (cars 192x256)
MAX_N_LATENT = 2 * int(math.log2(MAX_SIZE)) - 2               # W+ entries of the largest generator (18)
MAX_MODULATED_LAYERS = 3 * int(math.log2(MAX_SIZE)) - 4       # official delta indices of the largest one (26)
_BLUR_TAPS = 4                                  # rosinality's kernel (1, 3, 3, 1); padding math assumes 4 taps
_MAX_TEXT = 200                                 # dataset_type and the like


# ----------------------------------------------------------------------------------------------- field validation

_REQUIRED = object()     # marks a field without a default


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be a JSON object, got {type(value).__name__}")
    return value


def _field(d: Mapping[str, Any], key: str, where: str, default: Any) -> Any:
    if key in d:
        return d[key]
    if default is _REQUIRED:
        raise ValueError(f"{where} lacks the field '{key}'")
    return default


def _int(d: Mapping[str, Any], key: str, where: str, lo: int, hi: int, default: Any = _REQUIRED) -> int:
    return _int_value(_field(d, key, where, default), f"{where}.{key}", lo, hi)


def _int_value(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where} must be an integer, got {_show(value)}")
    if not lo <= value <= hi:
        raise ValueError(f"{where} is {value}; supported values are {lo} to {hi}")
    return value


def _power_of_two(d: Mapping[str, Any], key: str, where: str, lo: int, hi: int, default: Any = _REQUIRED) -> int:
    value = _int(d, key, where, lo, hi, default)
    if value & (value - 1):
        raise ValueError(f"{where}.{key} is {value}; it must be a power of two from {lo} to {hi}")
    return value


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {_show(value)}")
    return value


def _list(value: Any, where: str, lengths: range) -> list:
    if not isinstance(value, (list, tuple)):
        raise ValueError(f"{where} must be a list, got {_show(value)}")
    if len(value) not in lengths:
        raise ValueError(f"{where} has {len(value)} entries; expected {lengths.start} to {lengths.stop - 1}")
    return list(value)


def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def generator_config_from_dict(d: Any, where: str = "generator") -> GeneratorConfig:
    """A GeneratorConfig from its stored dict, every field checked (type, range, supported sizes).

    Raises:
        ValueError naming the field (e.g. "generator.size is 2048; supported values are 8 to 1024").
    """
    d = _mapping(d, where)
    size = _power_of_two(d, "size", where, MIN_SIZE, MAX_SIZE)
    kernel = _list(_field(d, "blur_kernel", where, [1, 3, 3, 1]), f"{where}.blur_kernel",
                   range(_BLUR_TAPS, _BLUR_TAPS + 1))
    for i, tap in enumerate(kernel):
        if _number(tap, f"{where}.blur_kernel[{i}]") < 0:
            raise ValueError(f"{where}.blur_kernel[{i}] is {tap}; blur taps must be >= 0")
    if sum(kernel) <= 0:
        raise ValueError(f"{where}.blur_kernel {kernel} sums to {sum(kernel)}; it must sum to more than 0")
    lr_mlp = _number(_field(d, "lr_mlp", where, 0.01), f"{where}.lr_mlp")
    if lr_mlp <= 0:
        raise ValueError(f"{where}.lr_mlp is {lr_mlp}; it must be > 0")
    crop = _field(d, "output_crop", where, None)
    if crop:
        crop = _list(crop, f"{where}.output_crop", range(2, 3))
        top, bottom = (_int_value(r, f"{where}.output_crop[{i}]", 0, size) for i, r in enumerate(crop))
        if top >= bottom:
            raise ValueError(f"{where}.output_crop {crop} keeps no rows; expected [top, bottom] with top < bottom")
        crop = (top, bottom)
    return GeneratorConfig(size=size, style_dim=_int(d, "style_dim", where, 1, MAX_STYLE_DIM, 512),
                           n_mlp=_int(d, "n_mlp", where, 1, MAX_N_MLP, 8),
                           channel_multiplier=_int(d, "channel_multiplier", where, 1, MAX_CHANNEL_MULTIPLIER, 2),
                           lr_mlp=lr_mlp, blur_kernel=tuple(kernel), output_crop=crop or None,
                           channel_divisor=_power_of_two(d, "channel_divisor", where, 1, MAX_CHANNEL_DIVISOR, 1))


def input_spec_from_dict(d: Any, where: str = "input") -> InputSpec:
    """An InputSpec from its stored dict, every field checked."""
    d = _mapping(d, where)
    dataset_type = _field(d, "dataset_type", where, _REQUIRED)
    if not isinstance(dataset_type, str) or len(dataset_type) > _MAX_TEXT:
        raise ValueError(f"{where}.dataset_type must be a short string, got {_show(dataset_type)}")
    return InputSpec(_int(d, "height", where, 1, MAX_INPUT_SIDE), _int(d, "width", where, 1, MAX_INPUT_SIDE),
                     dataset_type)


def _layers_to_tune(value: Any, where: str) -> tuple[int, ...]:
    items = _list(value, where, range(0, MAX_MODULATED_LAYERS + 1))
    layers = tuple(_int_value(v, f"{where}[{i}]", 0, MAX_MODULATED_LAYERS - 1) for i, v in enumerate(items))
    if len(set(layers)) != len(layers):
        raise ValueError(f"{where} lists a layer twice: {list(layers)}")
    return layers


@dataclass(frozen=True)
class StyleGAN2Config:
    """A bare rosinality generator (`g_ema`: FFHQ, cars, Toonify, StyleGAN-NADA, ...)."""
    kind: ClassVar[str] = "stylegan2"
    generator: GeneratorConfig          # the generator's architecture

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.to_json_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleGAN2Config":
        return cls(generator_config_from_dict(_field(d, "generator", "config", _REQUIRED)))

    def build(self) -> Generator:
        return Generator(self.generator)


@dataclass(frozen=True)
class HyperStyleConfig:
    """A HyperStyle model: hypernetwork + the generator it was trained with + latent_avg."""
    kind: ClassVar[str] = "hyperstyle"
    generator: GeneratorConfig          # the generator's architecture
    layers_to_tune: tuple[int, ...]     # official delta indices that have a refinement block
    variant: str                        # "shared" (released models) or "separable"
    input_nc: int                       # hypernetwork input channels: image + current reconstruction = 6
    input: InputSpec                    # encoder input size and dataset type

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.to_json_dict(), "layers_to_tune": list(self.layers_to_tune),
                "variant": self.variant, "input_nc": self.input_nc, "input": self.input.to_json_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HyperStyleConfig":
        variant = _field(d, "variant", "config", "shared")
        if not isinstance(variant, str) or variant not in VARIANTS:
            raise ValueError(f"config.variant is {_show(variant)}; known hypernetwork variants: {', '.join(VARIANTS)}")
        return cls(generator_config_from_dict(_field(d, "generator", "config", _REQUIRED)),
                   _layers_to_tune(_field(d, "layers_to_tune", "config", _REQUIRED), "config.layers_to_tune"),
                   variant, _int(d, "input_nc", "config", 1, MAX_INPUT_NC, 6),
                   input_spec_from_dict(_field(d, "input", "config", _REQUIRED)))

    def build(self) -> HyperStyleModel:
        return HyperStyleModel(HyperNetConfig(self.generator, self.layers_to_tune, self.variant, self.input_nc),
                               self.input)


@dataclass(frozen=True)
class WEncoderConfig:
    """A pSp W-encoder file: IR-SE50 encoder + its generator + latent_avg."""
    kind: ClassVar[str] = "w_encoder"
    generator: GeneratorConfig          # the decoder stored beside the encoder
    input: InputSpec                    # encoder input size and dataset type

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.to_json_dict(), "input": self.input.to_json_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "WEncoderConfig":
        return cls(generator_config_from_dict(_field(d, "generator", "config", _REQUIRED)),
                   input_spec_from_dict(_field(d, "input", "config", _REQUIRED)))

    def build(self) -> WEncoderModel:
        return WEncoderModel(self.generator, self.input)


@dataclass(frozen=True)
class ReStyleE4EConfig:
    """A ReStyle-e4e encoder file: e4e encoder on image + reconstruction, generator, latent_avg."""
    kind: ClassVar[str] = "restyle_e4e"
    generator: GeneratorConfig          # the decoder stored beside the encoder
    input: InputSpec                    # encoder input size and dataset type
    input_nc: int = 6                   # encoder input channels: image + current reconstruction

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.to_json_dict(), "input": self.input.to_json_dict(),
                "input_nc": self.input_nc}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ReStyleE4EConfig":
        return cls(generator_config_from_dict(_field(d, "generator", "config", _REQUIRED)),
                   input_spec_from_dict(_field(d, "input", "config", _REQUIRED)),
                   _int(d, "input_nc", "config", 1, MAX_INPUT_NC, 6))

    def build(self) -> ReStyleE4EModel:
        return ReStyleE4EModel(self.generator, self.input, self.input_nc)


ModelConfig = StyleGAN2Config | HyperStyleConfig | WEncoderConfig | ReStyleE4EConfig
MODEL_CONFIGS: dict[str, type] = {c.kind: c for c in (HyperStyleConfig, WEncoderConfig, ReStyleE4EConfig,
                                                      StyleGAN2Config)}


def config_from_dict(kind: str, d: Mapping[str, Any]) -> ModelConfig:
    """The typed config of `kind` from its stored dict, every field validated before anything is built.

    Raises:
        ValueError for an unknown kind, a missing field, a wrong type or a value the architecture does not support
        (the message names the field).
    """
    if not isinstance(kind, str) or kind not in MODEL_CONFIGS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[kind].from_dict(_mapping(d, "config"))


def config_of(model: nn.Module) -> ModelConfig:
    """The typed config describing a network in memory (what `save_model` stores)."""
    if isinstance(model, HyperStyleModel):
        c = model.config
        return HyperStyleConfig(c.generator, tuple(c.layers_to_tune), c.variant, c.input_nc, model.input_spec)
    if isinstance(model, WEncoderModel):
        return WEncoderConfig(model.decoder.config, model.input_spec)
    if isinstance(model, ReStyleE4EModel):
        return ReStyleE4EConfig(model.decoder.config, model.input_spec, model.encoder.input_layer[0].in_channels)
    if isinstance(model, Generator):
        return StyleGAN2Config(model.config)
    raise ValueError(f"cannot describe a {type(model).__name__}")


def build_model(kind: str, config: Mapping[str, Any]) -> nn.Module:
    """An untrained model of `kind` from its stored config dict (use under torch.device('meta') to skip init)."""
    return config_from_dict(kind, config).build()


def model_config(model: nn.Module) -> tuple[str, dict]:
    """(kind, config dict) of a network in memory, as stored in converted files' metadata."""
    config = config_of(model)
    return config.kind, config.to_dict()
