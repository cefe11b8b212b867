"""Tiny, randomly initialised models for tests and demos (seconds per image, no weights needed).

They have the real architectures with every width divided by `divisor`; results are meaningless images.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .editing.styleclip.text import import_clip
from .io.checkpoints import save_model
from .io.convert import convert
from .nn.hypernetwork import HyperNetConfig
from .nn.networks import HyperStyleModel, InputSpec, WEncoderModel
from .nn.stylegan2 import Generator, GeneratorConfig


def tiny_generator_config(size: int = 64, divisor: int = 16) -> GeneratorConfig:
    return GeneratorConfig(size, style_dim=512 // divisor, n_mlp=2, channel_divisor=divisor)


def make_tiny_models(seed: int = 0, size: int = 64, divisor: int = 16) -> tuple[HyperStyleModel, WEncoderModel]:
    """(HyperStyleModel, WEncoderModel) with random weights; small but non-zero weight deltas."""
    gen = torch.Generator().manual_seed(seed)
    config = tiny_generator_config(size, divisor)
    # The constructors draw biases and noise buffers from torch's global generator: seed it too (in a forked
    # state, so the caller's stream is untouched), or the same seed gives other models in every process.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hs = HyperStyleModel(HyperNetConfig(config), InputSpec())
        we = WEncoderModel(config, InputSpec())
    for model in (hs, we):
        for name, p in model.named_parameters():
            if p.ndim >= 2:
                p.data.copy_(torch.randn(p.shape, generator=gen) / max(1.0, p[0].numel() ** 0.5))
    with torch.no_grad():
        w = hs.hypernet.shared_weight_hypernet
        for t in (w.w1, w.w2):
            t.mul_(0.05)
        hs.latent_avg.copy_(torch.randn(hs.latent_avg.shape, generator=gen) * 0.1)
    hs.decoder.load_state_dict(we.decoder.state_dict())   # one generator, as in the real files
    return hs.eval().requires_grad_(False), we.eval().requires_grad_(False)


def write_tiny_models(folder: str | Path, seed: int = 0) -> tuple[Path, Path]:
    """Save tiny models as hyperstyle_ffhq.safetensors / faces_w_encoder.safetensors in `folder`."""
    folder = Path(folder)
    hs, we = make_tiny_models(seed)
    return (save_model(hs, folder / "hyperstyle_ffhq.safetensors", "tiny"),
            save_model(we, folder / "faces_w_encoder.safetensors", "tiny"))


def tiny_generator(seed: int = 0, size: int = 64, divisor: int = 16) -> Generator:
    torch.manual_seed(seed)
    return Generator(tiny_generator_config(size, divisor)).eval().requires_grad_(False)


def write_tiny_run_models(folder: str | Path, transfers: dict[str, int] | None = None) -> Path:
    """A tiny models folder for the folder runner: `write_tiny_models`, age and smile directions (written as official
    .pt files and converted, as a user's would be) and one tiny generator per `transfers` entry (name -> seed)."""
    folder = Path(folder)
    write_tiny_models(folder)
    for name, seed in (transfers if transfers is not None else {"toonify": 3}).items():
        save_model(tiny_generator(seed=seed), folder / f"{name}.safetensors", "tiny")
    g = torch.Generator().manual_seed(1)
    for name in ("age", "smile"):
        torch.save(torch.randn(1, tiny_generator_config().style_dim, generator=g), folder / f"{name}.pt")
        convert(folder / f"{name}.pt", folder)
        (folder / f"{name}.pt").unlink()
    return folder


def tiny_clip(seed: int = 0, image_resolution: int = 32) -> torch.nn.Module:
    """A small OpenAI CLIP (the `clip` package's own model class) with random weights, for the StyleCLIP paths;
    ImportError naming the install command when the optional package is missing."""
    clip = import_clip()
    torch.manual_seed(seed)
    model = clip.model.CLIP(embed_dim=32, image_resolution=image_resolution, vision_layers=1, vision_width=64,
                            vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=64,
                            transformer_heads=1, transformer_layers=1)
    with torch.no_grad():  # random init leaves the projections at zero scale in places; make every path matter
        model.text_projection.normal_(0, 0.2)
        model.visual.proj.normal_(0, 0.2)
    return model.eval()
