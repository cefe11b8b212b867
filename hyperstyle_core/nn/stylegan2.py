"""The StyleGAN2 generator as rosinality/stylegan2-pytorch lays it out (the one HyperStyle uses), for reading.

Modules hold the parameters under the official `g_ema` / `decoder.*` keys; the math lives in `ops`. The generator
takes W `[B, 512]`, W+ `[B, n_latent, 512]` or style-space (S) codes, and optional per-sample weight offsets keyed by
layer name (`WeightDeltas` is such a mapping), applied as `W * (1 + delta)`. This forward pass is the reference
(training differentiates it); inference runs the same layers through `nn/engine`, which is tested against it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..devices import full_float32
from . import ops
from .ops import IMPLS, assert_shape

CHANNELS_BASE = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
SUPPORTED_SIZES = (256, 512, 1024)


@dataclass(frozen=True)
class GeneratorConfig:
    size: int                                   # output resolution (square), 256/512/1024 (any power of 2 >= 8 works)
    style_dim: int = 512                        # width of Z, W and the mapping network
    n_mlp: int = 8                              # mapping network depth
    channel_multiplier: int = 2                 # config-f uses 2
    lr_mlp: float = 0.01                        # mapping equalised-lr multiplier
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    output_crop: tuple[int, int] | None = None  # rows kept by `generate` (cars: (64, 448) at 512 -> 384x512)
    channel_divisor: int = 1                    # shrinks every layer's width (tiny test models); 1 for real ones

    def channels(self, resolution: int) -> int:
        base = CHANNELS_BASE[resolution]
        base = base * self.channel_multiplier if resolution >= 64 else base
        return max(1, base // self.channel_divisor)

    @property
    def log_size(self) -> int:
        return int(math.log2(self.size))

    @property
    def n_latent(self) -> int:
        return self.log_size * 2 - 2

    @property
    def num_noise_layers(self) -> int:
        return (self.log_size - 2) * 2 + 1

    def to_json_dict(self) -> dict:
        return {"size": self.size, "style_dim": self.style_dim, "n_mlp": self.n_mlp,
                "channel_multiplier": self.channel_multiplier, "lr_mlp": self.lr_mlp,
                "blur_kernel": list(self.blur_kernel),
                "output_crop": list(self.output_crop) if self.output_crop else None,
                "channel_divisor": self.channel_divisor}


def modulated_layer_table(config: GeneratorConfig) -> list[tuple[str, int, int, int]]:
    """(name, out, in, k) of every modulated conv in official delta-index order.

    Index i of this list is index i of the official `weights_deltas` list: 0 conv1, 1 to_rgb1, then per block b
    2+3b convs.{2b} (up-sampling), 3+3b convs.{2b+1}, 4+3b to_rgbs.{b}.
    """
    c4 = config.channels(4)
    table = [("conv1", c4, c4, 3), ("to_rgb1", 3, c4, 1)]
    in_ch = c4
    for b, log_res in enumerate(range(3, config.log_size + 1)):
        out_ch = config.channels(2 ** log_res)
        table += [(f"convs.{2 * b}", out_ch, in_ch, 3), (f"convs.{2 * b + 1}", out_ch, out_ch, 3),
                  (f"to_rgbs.{b}", 3, out_ch, 1)]
        in_ch = out_ch
    return table


def block_layer_names(block: int) -> tuple[str, str, str]:
    """The layers of up-sampling block b: (up-sampling conv, same-size conv, ToRGB)."""
    return f"convs.{2 * block}", f"convs.{2 * block + 1}", f"to_rgbs.{block}"


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optional fused leaky ReLU."""

    def __init__(self,
                 in_dim: int,                   # input features
                 out_dim: int,                  # output features
                 bias_init: float = 0.0,        # initial bias (1 for the modulations: styles start at 1)
                 lr_mul: float = 1.0,           # learning-rate multiplier (the mapping network's 0.01)
                 activation: bool = False,      # fused leaky ReLU after the product
                 ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, in_dim] -> [B, out_dim]."""
        if self.activation:
            return ops.fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return (f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, lr_mul={self.lr_mul:g}, "
                f"activation={self.activation}")


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.pixel_norm(x)


class FIRKernel(nn.Module):
    """Holds a constant FIR `kernel` buffer (kept for the official key layout: `*.blur.kernel`, `*.upsample.kernel`)."""

    def __init__(self, taps: Sequence[int], gain: float):
        super().__init__()
        self.register_buffer("kernel", ops.make_blur_kernel(taps, gain))

    def extra_repr(self) -> str:
        return f"kernel={list(self.kernel.shape)}, gain={float(self.kernel.sum()):g}"


class ModulatedConv2d(nn.Module):
    def __init__(self,
                 in_channel: int,                           # input feature channels
                 out_channel: int,                          # output feature channels
                 kernel_size: int,                          # 3 for the convs, 1 for ToRGB
                 style_dim: int,                            # W width (input of the modulation)
                 demodulate: bool = True,                   # normalise each output filter (not for ToRGB)
                 upsample: bool = False,                    # stride-2 transposed conv, then the FIR blur
                 blur_kernel: Sequence[int] = (1, 3, 3, 1),  # FIR taps of the up-sampling blur
                 ):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            self.blur = FIRKernel(blur_kernel, gain=4.0)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def forward(self, x: torch.Tensor, style_code: torch.Tensor, delta: torch.Tensor | None,
                impl: str = "auto") -> torch.Tensor:
        """x [B, in, H, W], style_code [B, in], delta [B, out, in, k, k] or None -> [B, out, H', W']."""
        return ops.modulated_conv2d(x, self.weight[0], style_code, scale=self.scale, delta=delta,
                                    demodulate=self.demodulate, upsample=self.upsample,
                                    blur_kernel=self.blur.kernel if self.upsample else None, impl=impl)

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}")


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x [B, C, H, W] plus weight * noise ([1 or B, 1, H, W]; fresh N(0, 1) per sample when None)."""
        if noise is None:
            noise = x.new_empty(x.shape[0], 1, x.shape[2], x.shape[3]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    """Modulated 3x3 conv, noise, bias and leaky ReLU (times sqrt(2))."""

    def __init__(self,
                 in_channel: int,                   # input feature channels
                 out_channel: int,                  # output feature channels
                 style_dim: int,                    # W width
                 upsample: bool,                    # the block's first conv doubles the resolution
                 blur_kernel: Sequence[int],        # FIR taps of the up-sampling blur
                 ):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style_code: torch.Tensor, noise: torch.Tensor | None,
                delta: torch.Tensor | None, impl: str = "auto") -> torch.Tensor:
        """x [B, in, H, W] -> [B, out, H', W'] (H' = 2H when up-sampling)."""
        return self.activate(self.noise(self.conv(x, style_code, delta, impl), noise))


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB plus bias, added to the up-sampled RGB skip of the blocks before."""

    def __init__(self,
                 in_channel: int,                   # input feature channels
                 style_dim: int,                    # W width
                 upsample: bool,                    # up-sample the incoming skip (every ToRGB but the first)
                 blur_kernel: Sequence[int],        # FIR taps of the skip's up-sampling
                 ):
        super().__init__()
        if upsample:
            self.upsample = FIRKernel(blur_kernel, gain=4.0)
        self.has_upsample = upsample
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, style_code: torch.Tensor, skip: torch.Tensor | None,
                delta: torch.Tensor | None, impl: str = "auto") -> torch.Tensor:
        """x [B, in, H, W], skip [B, 3, H/2, W/2] or None -> RGB [B, 3, H, W]."""
        out = self.conv(x, style_code, delta, impl) + self.bias
        if skip is not None:
            out = out + ops.upsample2x(skip, self.upsample.kernel)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


class Generator(nn.Module):
    """rosinality StyleGAN2 generator (state-dict compatible with `g_ema`)."""

    def __init__(self, config: GeneratorConfig):
        super().__init__()
        self.config = config
        c = config
        self.style = nn.Sequential(PixelNorm(), *[EqualLinear(c.style_dim, c.style_dim, lr_mul=c.lr_mlp,
                                                              activation=True) for _ in range(c.n_mlp)])
        self.input = ConstantInput(c.channels(4))
        self.conv1 = StyledConv(c.channels(4), c.channels(4), c.style_dim, False, c.blur_kernel)
        self.to_rgb1 = ToRGB(c.channels(4), c.style_dim, False, c.blur_kernel)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for i in range(c.num_noise_layers):
            res = 2 ** ((i + 5) // 2)
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, res, res))
        in_ch = c.channels(4)
        for log_res in range(3, c.log_size + 1):
            out_ch = c.channels(2 ** log_res)
            self.convs.append(StyledConv(in_ch, out_ch, c.style_dim, True, c.blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, c.style_dim, False, c.blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, c.style_dim, True, c.blur_kernel))
            in_ch = out_ch
        self.layer_table = modulated_layer_table(c)
        self.layer_names = [name for name, *_ in self.layer_table]

    @property
    def n_latent(self) -> int:
        return self.config.n_latent

    @property
    def size(self) -> int:
        return self.config.size

    @property
    def device(self) -> torch.device:
        """Where the weights live (inputs are moved here)."""
        return self.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point type (inputs are cast to it)."""
        return self.input.input.dtype

    def extra_repr(self) -> str:
        return f"size={self.size}, style_dim={self.config.style_dim}, n_latent={self.n_latent}"

    def mapping(self, z: torch.Tensor, truncation: float = 1.0,
                truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        """Z [B, style_dim] -> W [B, style_dim], optionally truncated towards `truncation_latent` [style_dim]."""
        w = self.style(z)
        if truncation < 1.0:
            if truncation_latent is None:
                raise ValueError("truncation < 1 needs truncation_latent (e.g. the generator file's latent_avg)")
            w = truncation_latent + truncation * (w - truncation_latent)
        return w

    def broadcast_latent(self, latent: torch.Tensor) -> torch.Tensor:
        """W [B, D] or W+ [B, n_latent, D] -> W+ [B, n_latent, D]."""
        d = self.config.style_dim
        if latent.ndim == 2 and latent.shape[1] == d:
            return latent.unsqueeze(1).repeat(1, self.n_latent, 1)
        if latent.ndim == 3 and latent.shape[1:] == (self.n_latent, d):
            return latent
        raise ValueError(f"latent has shape {list(latent.shape)}; this {self.size}px generator expects W [B, {d}] "
                         f"or W+ [B, {self.n_latent}, {d}]")

    def style_codes(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        """Style-space (S) codes: each modulated layer's modulation of its W+ entry, {layer: [B, in]}."""
        wplus = self.broadcast_latent(latent)
        # conv1 reads latent[:, 0], to_rgb1 latent[:, 1]; block b reads 2b+1, 2b+2 and its ToRGB 2b+3.
        latent_index = [0, 1] + [i for b in range(len(self.to_rgbs)) for i in (2 * b + 1, 2 * b + 2, 2 * b + 3)]
        return {name: conv.modulation(wplus[:, idx])
                for (name, conv), idx in zip(self.modulated_layers(), latent_index)}

    def modulated_layers(self) -> list[tuple[str, ModulatedConv2d]]:
        """(name, modulated conv) of every layer in official delta-index order."""
        layers = [("conv1", self.conv1.conv), ("to_rgb1", self.to_rgb1.conv)]
        for b, to_rgb in enumerate(self.to_rgbs):
            up, same, rgb = block_layer_names(b)
            layers += [(up, self.convs[2 * b].conv), (same, self.convs[2 * b + 1].conv), (rgb, to_rgb.conv)]
        return layers

    def checked_style_codes(self, latent: torch.Tensor | None,
                            style_codes: Mapping[str, torch.Tensor] | None) -> Mapping[str, torch.Tensor]:
        """The S codes to render: `style_codes` as given (one [B, in] entry per layer), else those of `latent`."""
        if style_codes is None:
            if latent is None:
                raise ValueError("generator needs a latent or style codes")
            return self.style_codes(latent)
        missing = [n for n in self.layer_names if n not in style_codes]
        if missing:
            raise ValueError(f"style codes lack layers {missing[:3]}...; expected one entry per layer "
                             f"{self.layer_names[0]}..{self.layer_names[-1]}")
        batch = style_codes["conv1"].shape[0]
        for name, _, in_channels, _ in self.layer_table:
            assert_shape(style_codes[name], [batch, in_channels], f"style code of {name}")
        return style_codes

    def check_delta_names(self, deltas: Mapping[str, torch.Tensor]) -> None:
        """Raise ValueError for weight offsets of layers this generator does not have."""
        unknown = sorted(set(deltas) - set(self.layer_names))
        if unknown:
            raise ValueError(f"weight deltas for layers {unknown[:3]} that this {self.size}px generator does not "
                             f"have (its layers: {self.layer_names[0]}..{self.layer_names[-1]}); use deltas made "
                             f"for this generator")

    def noise_inputs(self, randomize_noise: bool) -> list[torch.Tensor | None]:
        """Per noise layer: the stored `noises.noise_i` buffer [1, 1, res, res], or None (fresh noise per call)."""
        if randomize_noise:
            return [None] * self.config.num_noise_layers
        return [getattr(self.noises, f"noise_{i}") for i in range(self.config.num_noise_layers)]

    def blocks_for(self, render_size: int | None) -> int:
        """How many up-sampling blocks draw a render_size image (all of them for None)."""
        if render_size is None:
            return len(self.to_rgbs)
        valid = [2 ** log_res for log_res in range(3, self.config.log_size + 1)]
        if render_size not in valid:
            raise ValueError(f"render_size must be one of {valid} for this {self.size}px generator, "
                             f"got {render_size!r}")
        return valid.index(render_size) + 1

    @full_float32
    def forward(self, latent: torch.Tensor | None = None, deltas: Mapping[str, torch.Tensor] | None = None,
                randomize_noise: bool = False, style_codes: Mapping[str, torch.Tensor] | None = None,
                impl: str = "auto", render_size: int | None = None) -> torch.Tensor:
        """Render images (the reference pass; `nn.engine.render` is the same in faster forms).

        Args:
            latent: W [B, D] or W+ [B, n_latent, D] (ignored when style_codes are given).
            deltas: {layer name: [B, out, in, k, k]} relative weight offsets; missing layers are untouched.
            randomize_noise: fresh N(0,1) noise per call instead of the stored `noises.noise_i` buffers.
            style_codes: {layer name: [B, in]} S codes that replace the modulation of every layer.
            impl: modulated-conv implementation, see ops.modulated_conv2d.
            render_size: stop at this resolution (a power of 2 from 8 to size) and return its RGB skip image, the
                image a smaller generator with the same weights would draw; None = the full size.
        Returns:
            [B, 3, render_size or size, ...], roughly in [-1, 1] (not clamped).
        """
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        n_blocks = self.blocks_for(render_size)
        s = self.checked_style_codes(latent, style_codes)
        deltas = deltas or {}
        self.check_delta_names(deltas)
        noise = self.noise_inputs(randomize_noise)
        x = self.input.input.repeat(s["conv1"].shape[0], 1, 1, 1)
        x = self.conv1(x, s["conv1"], noise[0], deltas.get("conv1"), impl)
        skip = self.to_rgb1(x, s["to_rgb1"], None, deltas.get("to_rgb1"), impl)
        for b in range(n_blocks):
            up, same, rgb = block_layer_names(b)
            x = self.convs[2 * b](x, s[up], noise[2 * b + 1], deltas.get(up), impl)
            x = self.convs[2 * b + 1](x, s[same], noise[2 * b + 2], deltas.get(same), impl)
            skip = self.to_rgbs[b](x, s[rgb], skip, deltas.get(rgb), impl)
        return skip
