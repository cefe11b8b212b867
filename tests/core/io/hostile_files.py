"""What the hostile-file tests share: stride-0 views, a tiny converted generator, an official-layout 8 px
checkpoint, the keys the converter reads to size a generator. (Imported by the test files of this folder, which
pytest puts on sys.path.)"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from hyperstyle_core.io.checkpoints import save_model
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig

HUGE = 2 ** 31       # elements of a crafted view: 8 GB as float32 if anything materialised it


def stride0(*shape: int) -> torch.Tensor:
    """A view of one float repeated `shape` times: torch.save keeps the stride 0, so the file stays tiny."""
    return torch.zeros(1).expand(*shape)


def tensors_and_meta(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def tiny_generator_file(folder: Path) -> Path:
    """A converted-format tiny generator (8 px, divided widths): the base for tampered metadata and tensors."""
    return save_model(Generator(GeneratorConfig(8, style_dim=8, n_mlp=1, channel_divisor=64)),
                      folder / "tiny.safetensors")


def official_8px_checkpoint() -> dict:
    """An official-layout `g_ema` checkpoint of an 8 px generator (full widths: the converter assumes them)."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8, style_dim=8, n_mlp=1))
    return {"g_ema": dict(generator.state_dict()), "latent_avg": torch.zeros(8)}


def fake_generator_keys(prefix: str = "", n_blocks: int = 6, n_mlp: int = 2) -> dict[str, torch.Tensor]:
    """Just the keys detect() reads to size a generator (shapes as in rosinality's g_ema)."""
    sd = {f"{prefix}to_rgbs.{i}.bias": torch.zeros(1, 3, 1, 1) for i in range(n_blocks)}
    sd.update({f"{prefix}style.{i}.weight": torch.zeros(4, 4) for i in range(1, n_mlp + 1)})
    return sd
