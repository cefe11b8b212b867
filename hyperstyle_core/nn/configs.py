"""Typed architecture configs, one per loadable model kind, defined once.

A converted file stores its kind and `config.to_dict()` as JSON metadata; `config_from_dict` reads it back,
`config.build()` makes the untrained network and `config_of(model)` describes a network in memory. The converter
(io.convert), the loader (io.checkpoints) and `save_model` all go through these classes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

from torch import nn

from .hypernetwork import VARIANTS, HyperNetConfig
from .networks import HyperStyleModel, InputSpec, ReStyleE4EModel, WEncoderModel
from .stylegan2 import Generator, GeneratorConfig


@dataclass(frozen=True)
class StyleGAN2Config:
    """A bare rosinality generator (`g_ema`: FFHQ, cars, Toonify, StyleGAN-NADA, ...)."""
    kind: ClassVar[str] = "stylegan2"
    generator: GeneratorConfig          # the generator's architecture

    def to_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.to_json_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleGAN2Config":
        return cls(GeneratorConfig.from_json_dict(d["generator"]))

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
        variant = d.get("variant", "shared")
        if variant not in VARIANTS:
            raise ValueError(f"unknown hypernetwork variant {variant!r}")
        return cls(GeneratorConfig.from_json_dict(d["generator"]), tuple(int(i) for i in d["layers_to_tune"]),
                   variant, int(d.get("input_nc", 6)), InputSpec.from_json_dict(d["input"]))

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
        return cls(GeneratorConfig.from_json_dict(d["generator"]), InputSpec.from_json_dict(d["input"]))

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
        return cls(GeneratorConfig.from_json_dict(d["generator"]), InputSpec.from_json_dict(d["input"]),
                   int(d.get("input_nc", 6)))

    def build(self) -> ReStyleE4EModel:
        return ReStyleE4EModel(self.generator, self.input, self.input_nc)


ModelConfig = StyleGAN2Config | HyperStyleConfig | WEncoderConfig | ReStyleE4EConfig
MODEL_CONFIGS: dict[str, type] = {c.kind: c for c in (HyperStyleConfig, WEncoderConfig, ReStyleE4EConfig,
                                                      StyleGAN2Config)}


def config_from_dict(kind: str, d: Mapping[str, Any]) -> ModelConfig:
    """The typed config of `kind` from its stored dict. Raises ValueError for an unknown kind."""
    if kind not in MODEL_CONFIGS:
        raise ValueError(f"unknown model kind {kind!r}; known: {', '.join(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[kind].from_dict(d)


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
