"""The loadable model kinds: a HyperStyle model, a W-encoder, a ReStyle-e4e encoder (plus the bare Generator).

Each holds its sub-networks under the official key prefixes (`hypernet.`, `encoder.`, `decoder.`) and its
`latent_avg`, so a converted file loads with strict keys and no renaming.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .encoders import ReStyleE4EEncoder, WEncoder
from .hypernetwork import HyperNetConfig, HyperNetwork
from .stylegan2 import Generator, GeneratorConfig


@dataclass(frozen=True)
class InputSpec:
    """What an encoder or hypernetwork expects: [B, 3, height, width] in [-1, 1]."""
    height: int = 256
    width: int = 256
    dataset_type: str = "ffhq"

    @property
    def is_cars(self) -> bool:
        # The official code switches on this substring (hyperstyle.py, inference_utils.py).
        return "cars" in self.dataset_type

    def check(self, images: torch.Tensor, who: str) -> None:
        if not isinstance(images, torch.Tensor):
            raise ValueError(f"{who} expects a torch tensor [B, 3, {self.height}, {self.width}], "
                             f"got {type(images).__name__}")
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{who} expects images [B, 3, {self.height}, {self.width}] in [-1, 1], got shape "
                             f"{list(images.shape)}. Convert grayscale/RGBA to RGB first.")
        if tuple(images.shape[2:]) != (self.height, self.width):
            raise ValueError(f"{who} expects {self.height}x{self.width} inputs (HxW), got "
                             f"{images.shape[2]}x{images.shape[3]}. Resize the aligned image first, as the official "
                             f"inference transform does.")
        if not images.is_floating_point():
            raise ValueError(f"{who} expects float images in [-1, 1], got dtype {images.dtype}")

    def pool(self, full: torch.Tensor) -> torch.Tensor:
        """Full-resolution (already cropped for cars) reconstruction -> hypernet input size."""
        return F.adaptive_avg_pool2d(full, (self.height, self.width))

    def to_json_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "dataset_type": self.dataset_type}


def cars_input_spec(dataset_type: str) -> InputSpec:
    return InputSpec(192, 256, dataset_type) if "cars" in dataset_type else InputSpec(256, 256, dataset_type)


class HyperStyleModel(nn.Module):
    """Hypernetwork + the generator it was trained with + latent_avg [n_latent, 512]."""

    kind = "hyperstyle"

    def __init__(self, config: HyperNetConfig, input_spec: InputSpec):
        super().__init__()
        self.config = config
        self.input_spec = input_spec
        self.hypernet = HyperNetwork(config)
        self.decoder = Generator(config.generator)
        self.register_buffer("latent_avg", torch.zeros(config.generator.n_latent, config.generator.style_dim))

    @property
    def generator(self) -> Generator:
        return self.decoder


class WEncoderModel(nn.Module):
    """pSp W-encoder file: IR-SE50 encoder + its generator + latent_avg (HyperStyle uses only the encoder)."""

    kind = "w_encoder"

    def __init__(self, generator_config: GeneratorConfig, input_spec: InputSpec):
        super().__init__()
        self.input_spec = input_spec
        self.encoder = WEncoder(generator_config.n_latent, generator_config.style_dim,
                                generator_config.channel_divisor)
        self.decoder = Generator(generator_config)
        self.register_buffer("latent_avg", torch.zeros(generator_config.n_latent, generator_config.style_dim))

    @property
    def generator(self) -> Generator:
        return self.decoder


class ReStyleE4EModel(nn.Module):
    """ReStyle e4e file: 6-channel IR-SE50 e4e encoder + generator + latent_avg (used by domain adaptation)."""

    kind = "restyle_e4e"

    def __init__(self, generator_config: GeneratorConfig, input_spec: InputSpec, input_nc: int = 6):
        super().__init__()
        self.input_spec = input_spec
        self.encoder = ReStyleE4EEncoder(generator_config.n_latent, input_nc)
        self.decoder = Generator(generator_config)
        self.register_buffer("latent_avg", torch.zeros(generator_config.n_latent, generator_config.style_dim))

    @property
    def generator(self) -> Generator:
        return self.decoder

