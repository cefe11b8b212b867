"""The generator's inference pass: `Generator.forward`'s images, computed the way the plan says.

Features travel packed as [1, B*C, H, W] so that each layer's per-sample conv is one grouped conv; every layer runs
in its folded form (nn/engine/folded.py); where the plan says so, a batch's large blocks run one sample at a time
and a single sample's large blocks in strips (nn/engine/strips.py). Same images as the reference up to float
rounding (tests/core/nn/engine).
"""
from __future__ import annotations

from typing import Mapping

import torch

from ...devices import ieee_float32
from ..stylegan2 import Generator, block_layer_names
from . import folded
from .plan import InferencePlan
from .strips import block_in_strips

Noise = list[torch.Tensor | None]


def render(generator: Generator, plan: InferencePlan, latent: torch.Tensor | None = None,
           deltas: Mapping[str, torch.Tensor] | None = None, randomize_noise: bool = False,
           style_codes: Mapping[str, torch.Tensor] | None = None, render_size: int | None = None) -> torch.Tensor:
    """Render as `generator(latent, deltas, randomize_noise, style_codes, render_size=...)` does, without autograd.

    Args:
        generator: the generator to run (its weights' dtype and device; inputs must be there already).
        plan: the engine's choices for that device (plan_inference).
        latent: W [B, D] or W+ [B, n_latent, D] (ignored when style_codes are given).
        deltas: {layer name: [B or 1, out, in, k, k]} relative weight offsets; missing layers are untouched.
        randomize_noise: fresh noise per call instead of the stored noise buffers.
        style_codes: {layer name: [B, in]} S codes replacing every layer's modulation.
        render_size: stop at this resolution and return its RGB skip image (see Generator.forward).
    Returns:
        [B, 3, render_size or size, ...], contiguous, roughly in [-1, 1].
    """
    with torch.no_grad(), ieee_float32(generator.device):
        n_blocks = generator.blocks_for(render_size)
        s = generator.checked_style_codes(latent, style_codes)
        deltas = deltas or {}
        generator.check_delta_names(deltas)
        noise = generator.noise_inputs(randomize_noise)
        batch = s["conv1"].shape[0]
        const = generator.input.input
        x = const.repeat(batch, 1, 1, 1).reshape(1, -1, const.shape[2], const.shape[3])
        x = x.contiguous(memory_format=plan.feature_format)
        x = folded.styled_conv(generator.conv1, x, batch, s["conv1"], noise[0], deltas.get("conv1"))
        skip = folded.to_rgb(generator.to_rgb1, x, batch, s["to_rgb1"], None, deltas.get("to_rgb1"), plan)
        split = plan.first_per_sample_block(batch, n_blocks)
        for b in range(split):
            x, skip = _block(generator, b, x, skip, batch, s, noise, deltas, plan, b < n_blocks - 1)
        if split < n_blocks:
            skip = _blocks_per_sample(generator, range(split, n_blocks), x, skip, batch, s, noise, deltas, plan)
        return skip.reshape(batch, 3, skip.shape[2], skip.shape[3]).contiguous()


def _blocks_per_sample(generator: Generator, blocks: range, x: torch.Tensor, skip: torch.Tensor, batch: int,
                       s: Mapping[str, torch.Tensor], noise: Noise, deltas: Mapping[str, torch.Tensor],
                       plan: InferencePlan) -> torch.Tensor:
    """The large blocks one sample at a time: each runs exactly as a batch of one (contiguous features, plain
    convs, one sample's feature maps in memory), which scales linearly where packed batches do not. Returns the
    packed RGB skip [1, B*3, H, W]."""
    channels = x.shape[1] // batch
    images = []
    for i in range(batch):
        x_i = x[:, i * channels:(i + 1) * channels].contiguous(memory_format=plan.feature_format)
        skip_i = skip[:, 3 * i:3 * i + 3]
        s_i = {name: code[i:i + 1] for name, code in s.items()}
        deltas_i = {name: _sample_delta(d, i, batch) for name, d in deltas.items()}
        for b in blocks:
            x_i, skip_i = _block(generator, b, x_i, skip_i, 1, s_i, noise, deltas_i, plan, b < blocks[-1])
        images.append(skip_i)
    return torch.cat(images, 1)


def _block(generator: Generator, b: int, x: torch.Tensor, skip: torch.Tensor, batch: int,
           s: Mapping[str, torch.Tensor], noise: Noise, deltas: Mapping[str, torch.Tensor], plan: InferencePlan,
           need_features: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """Up-sampling block b (output 2**(b+3) px) on packed features: (features, RGB skip); in strips where the plan
    says so, which skip the features when need_features is False (the last block)."""
    up, same, rgb = block_layer_names(b)
    up_conv, same_conv, to_rgb = generator.convs[2 * b], generator.convs[2 * b + 1], generator.to_rgbs[b]
    out_channels = up_conv.conv.out_channel
    if plan.block_in_strips(batch, out_channels, 2 * x.shape[2], 2 * x.shape[3], x.element_size()):
        return block_in_strips(up_conv, same_conv, to_rgb, x, skip, (s[up], s[same], s[rgb]),
                               (noise[2 * b + 1], noise[2 * b + 2]), (deltas.get(up), deltas.get(same),
                                                                      deltas.get(rgb)), plan, need_features)
    x = folded.styled_conv(up_conv, x, batch, s[up], noise[2 * b + 1], deltas.get(up))
    x = folded.styled_conv(same_conv, x, batch, s[same], noise[2 * b + 2], deltas.get(same))
    return x, folded.to_rgb(to_rgb, x, batch, s[rgb], skip, deltas.get(rgb), plan)


def _sample_delta(delta: torch.Tensor, i: int, batch: int) -> torch.Tensor:
    """Sample i's weight offset from a batch's ([B, out, in, k, k]); shared ones (batch 1, or [out, in, k, k]) as is."""
    return delta[i:i + 1] if delta.ndim == 5 and delta.shape[0] == batch else delta
