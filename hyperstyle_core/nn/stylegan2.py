"""StyleGAN2 generator with the parameter layout of rosinality/stylegan2-pytorch (the one HyperStyle uses).

Modules only hold parameters (their state-dict keys equal the official `g_ema` / `decoder.*` keys); the math
lives in `ops`. The generator takes W `[B, 512]`, W+ `[B, n_latent, 512]` or style-space (S) codes, and optional
per-sample weight offsets keyed by layer name (`WeightDeltas` is such a mapping).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from ..devices import full_float32
from . import ops, strips
from .ops import IMPLS
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


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; optional fused leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activation:
            return ops.fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, bias=self.bias * self.lr_mul)


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.pixel_norm(x)


class FIRKernel(nn.Module):
    """Holds a constant FIR `kernel` buffer (kept for the official key layout: `*.blur.kernel`, `*.upsample.kernel`)."""

    def __init__(self, taps: Sequence[int], gain: float):
        super().__init__()
        self.register_buffer("kernel", ops.make_blur_kernel(taps, gain))


class ModulatedConv2d(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False, blur_kernel: Sequence[int] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel, self.out_channel, self.kernel_size = in_channel, out_channel, kernel_size
        self.demodulate, self.upsample = demodulate, upsample
        if upsample:
            self.blur = FIRKernel(blur_kernel, gain=4.0)
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def forward(self, x: torch.Tensor, style_code: torch.Tensor, delta: torch.Tensor | None,
                impl: str = "auto", gain: float = 1.0, bias: torch.Tensor | None = None) -> torch.Tensor:
        """Packed features [1, B*in, H, W] -> [1, B*out, H', W'] (B comes from style_code [B, in]).

        gain scales the weights and bias [B*out] is added in the conv's own pass (both for the folded epilogues of
        StyledConv and ToRGB)."""
        return ops.conv_packed(x, self.modulated(style_code, delta, gain), self.upsample,
                               self.blur.kernel if self.upsample else None, impl, bias)

    def modulated(self, style_code: torch.Tensor, delta: torch.Tensor | None, gain: float = 1.0) -> torch.Tensor:
        """This layer's per-sample weights [B, out, in, k, k] for style_code [B, in] (see ops.modulated_weight)."""
        return ops.modulated_weight(self.weight[0], style_code, self.scale, delta, self.demodulate, gain)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def scaled_noise(self, x: torch.Tensor, batch: int, noise: torch.Tensor | None,
                     gain: float = 1.0) -> torch.Tensor:
        """weight * noise (times gain), broadcastable to packed x [1, B*C, H, W]; fresh N(0,1) per sample when
        noise is None."""
        _, bc, h, w = x.shape
        return self.term(batch, bc // batch, h, w, x, noise, gain)

    def term(self, batch: int, channels: int, height: int, width: int, like: torch.Tensor,
             noise: torch.Tensor | None, gain: float = 1.0) -> torch.Tensor:
        """`scaled_noise` for packed features of this size: fresh noise is drawn [B, 1, H, W] and, for B > 1,
        spread over each sample's channels; a single sample's stays [1, 1, H, W] and broadcasts."""
        if noise is None:
            noise = like.new_empty(batch, 1, height, width).normal_()
            if batch > 1:
                noise = noise.expand(batch, channels, height, width).reshape(1, batch * channels, height, width)
        return (self.weight if gain == 1.0 else self.weight * gain) * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.fused_leaky_relu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, style_dim: int, upsample: bool,
                 blur_kernel: Sequence[int]):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, 3, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, batch: int, style_code: torch.Tensor, noise: torch.Tensor | None,
                delta: torch.Tensor | None, impl: str = "auto") -> torch.Tensor:
        if impl != "ref" and not torch.is_grad_enabled():
            return self._forward_folded(x, batch, style_code, noise, delta, impl)
        out = self.conv(x, style_code, delta, impl)
        inplace = not torch.is_grad_enabled()
        noise_term = self.noise.scaled_noise(out, batch, noise)
        out = out.add_(noise_term) if inplace else out + noise_term
        return ops.fused_leaky_relu(out, self.activate.bias.repeat(batch), inplace=inplace)

    def _forward_folded(self, x: torch.Tensor, batch: int, style_code: torch.Tensor, noise: torch.Tensor | None,
                        delta: torch.Tensor | None, impl: str) -> torch.Tensor:
        """The same layer in two passes over the features instead of four (inference only).

        leaky_relu(z) * sqrt(2) == leaky_relu(sqrt(2) * z) because sqrt(2) > 0, so the gain goes into the [B, out]
        demodulation factors, the bias and the noise weight, and the bias is added inside the conv (or FIR) pass:
        what is left is one pass adding the noise and one in-place activation. Equal to the reference up to float
        rounding (products formed in another order)."""
        out = self.conv(x, style_code, delta, impl, gain=ops.SQRT2, bias=self.folded_bias(batch))
        out.add_(self.noise.scaled_noise(out, batch, noise, ops.SQRT2))
        return F.leaky_relu_(out, ops.LEAKY_SLOPE)

    def folded_bias(self, batch: int) -> torch.Tensor:
        """The activation bias times the folded gain sqrt(2), for packed features [1, B*out, H, W]."""
        return self.activate.bias.repeat(batch) * ops.SQRT2


class ToRGB(nn.Module):
    def __init__(self, in_channel: int, style_dim: int, upsample: bool, blur_kernel: Sequence[int]):
        super().__init__()
        if upsample:
            self.upsample = FIRKernel(blur_kernel, gain=4.0)
        self.has_upsample = upsample
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, batch: int, style_code: torch.Tensor, skip: torch.Tensor | None,
                delta: torch.Tensor | None, impl: str = "auto") -> torch.Tensor:
        if impl != "ref" and not torch.is_grad_enabled():
            # Inference: the bias rides in the 1x1 conv's pass (a separate add over a 3-channel channels-last image
            # cost more than the conv on CPU) and the skip is up-sampled by separable 1-D passes on CPU.
            out = self.conv(x, style_code, delta, impl, bias=self.bias.view(-1).repeat(batch))
            return out if skip is None else out.add_(self.upsampled_skip(skip))
        out = self.conv(x, style_code, delta, impl) + self.bias.repeat(1, batch, 1, 1)
        if skip is not None:
            out = out + ops.upsample2x(skip, self.upsample.kernel)
        return out

    def upsampled_skip(self, skip: torch.Tensor) -> torch.Tensor:
        """The inference form of the skip's 2x up-sampling: two 1-D polyphase passes on CPU, upfirdn2d elsewhere."""
        upsample = ops.upsample2x_separable if skip.device.type == "cpu" else ops.upsample2x
        return upsample(skip, self.upsample.kernel)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))


def _sample_delta(delta: torch.Tensor, i: int, batch: int) -> torch.Tensor:
    """Sample i's weight offset from a batch's ([B, out, in, k, k]); shared ones (batch 1, or [out, in, k, k]) as is."""
    return delta[i:i + 1] if delta.ndim == 5 and delta.shape[0] == batch else delta


def feature_memory_format(param: torch.Tensor) -> torch.memory_format:
    """Memory format of the generator's features on the parameters' device (fast paths; `ref` keeps NCHW).

    CPU: channels_last, several times faster for oneDNN's transposed convs and FIR filters. CUDA: NCHW. Measured on
    an H200 (FFHQ 1024, 5 iterations, float32): channels_last made the inversion 0.156 s at batch 1 and 0.442 s at
    batch 4 against 0.125 s and 0.311 s in NCHW (bf16 fast mode: 0.127 against 0.114 s at batch 4); in a profile
    cuDNN ran the channels_last depthwise FIR filters as a direct grouped kernel (34 ms per inversion against 8 ms
    for NCHW's depthwise kernel) with layout conversions around other convs. MPS (not measured): NCHW, its native
    layout.
    """
    return torch.channels_last if param.device.type == "cpu" else torch.contiguous_format


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
        mods = self._modulated_layers()
        # conv1 reads latent[:, 0], to_rgb1 latent[:, 1]; block b reads 2b+1, 2b+2 and its ToRGB 2b+3.
        latent_index = [0, 1] + [i for b in range(len(self.to_rgbs)) for i in (2 * b + 1, 2 * b + 2, 2 * b + 3)]
        return {name: mod.modulation(wplus[:, idx]) for (name, mod), idx in zip(mods, latent_index)}

    def _modulated_layers(self) -> list[tuple[str, ModulatedConv2d]]:
        layers = [("conv1", self.conv1.conv), ("to_rgb1", self.to_rgb1.conv)]
        for b, to_rgb in enumerate(self.to_rgbs):
            layers += [(f"convs.{2 * b}", self.convs[2 * b].conv), (f"convs.{2 * b + 1}", self.convs[2 * b + 1].conv),
                       (f"to_rgbs.{b}", to_rgb.conv)]
        return layers

    @full_float32
    def forward(self, latent: torch.Tensor | None = None, deltas: Mapping[str, torch.Tensor] | None = None,
                randomize_noise: bool = False, style_codes: Mapping[str, torch.Tensor] | None = None,
                impl: str = "auto", render_size: int | None = None) -> torch.Tensor:
        """Render images.

        Args:
            latent: W [B, D] or W+ [B, n_latent, D] (ignored when style_codes are given).
            deltas: {layer name: [B, out, in, k, k]} relative weight offsets; missing layers are untouched.
            randomize_noise: fresh N(0,1) noise per call instead of the stored `noises.noise_i` buffers.
            style_codes: {layer name: [B, in]} S codes that replace the modulation of every layer.
            impl: modulated-conv implementation, see ops.modulated_conv2d.
            render_size: stop at this resolution (a power of 2 from 8 to size) and return its RGB skip image, the
                image a smaller generator with the same weights would draw (fast mode's preview renders); None =
                the full size.
        Returns:
            [B, 3, render_size or size, ...], roughly in [-1, 1] (not clamped).
        """
        n_blocks = self._blocks_for(render_size)
        if style_codes is None:
            if latent is None:
                raise ValueError("generator needs a latent or style codes")
            style_codes = self.style_codes(latent)
        else:
            missing = [n for n in self.layer_names if n not in style_codes]
            if missing:
                raise ValueError(f"style codes lack layers {missing[:3]}...; expected one entry per layer "
                                 f"{self.layer_names[0]}..{self.layer_names[-1]}")
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
        deltas = deltas or {}
        s = style_codes
        batch = s["conv1"].shape[0]
        if randomize_noise:
            noise = [None] * self.config.num_noise_layers
        else:
            noise = [getattr(self.noises, f"noise_{i}") for i in range(self.config.num_noise_layers)]
        # Features travel packed as [1, B*C, H, W] so each per-sample conv is one grouped conv.
        const = self.input.input
        memory_format = torch.contiguous_format if impl == "ref" else feature_memory_format(const)
        out = const.repeat(batch, 1, 1, 1).reshape(1, -1, const.shape[2], const.shape[3])
        out = out.contiguous(memory_format=memory_format)
        out = self.conv1(out, batch, s["conv1"], noise[0], deltas.get("conv1"), impl)
        skip = self.to_rgb1(out, batch, s["to_rgb1"], None, deltas.get("to_rgb1"), impl)
        split = self._first_per_sample_block(const, batch, n_blocks, impl)
        for b in range(split):
            out, skip = self._block(b, out, skip, batch, s, noise, deltas, impl, b < n_blocks - 1)
        if split < n_blocks:
            # The large blocks one sample at a time: each runs exactly as a batch of one (contiguous features, plain
            # convs, one sample's feature maps in memory), which scales linearly where packed batches do not.
            channels = out.shape[1] // batch
            images = []
            for i in range(batch):
                out_i = out[:, i * channels:(i + 1) * channels].contiguous(memory_format=memory_format)
                skip_i = skip[:, 3 * i:3 * i + 3]
                s_i = {name: code[i:i + 1] for name, code in s.items()}
                deltas_i = {name: _sample_delta(d, i, batch) for name, d in deltas.items()}
                for b in range(split, n_blocks):
                    out_i, skip_i = self._block(b, out_i, skip_i, 1, s_i, noise, deltas_i, impl, b < n_blocks - 1)
                images.append(skip_i)
            skip = torch.cat(images, 1)
        return skip.reshape(batch, 3, skip.shape[2], skip.shape[3]).contiguous()

    def _block(self, b: int, out: torch.Tensor, skip: torch.Tensor, batch: int, s: Mapping[str, torch.Tensor],
               noise: list[torch.Tensor | None], deltas: Mapping[str, torch.Tensor],
               impl: str, need_features: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Up-sampling block b (output 2**(b+3) px) on packed features: (features, RGB skip); large blocks in CPU
        inference run in strips (see nn/strips.py), which skip the features when need_features is False."""
        up, same, rgb = f"convs.{2 * b}", f"convs.{2 * b + 1}", f"to_rgbs.{b}"
        if strips.strips_pay(out, batch, self.convs[2 * b].conv.out_channel, impl):
            return strips.block_in_strips(self.convs[2 * b], self.convs[2 * b + 1], self.to_rgbs[b], out, skip,
                                          (s[up], s[same], s[rgb]), (noise[2 * b + 1], noise[2 * b + 2]),
                                          (deltas.get(up), deltas.get(same), deltas.get(rgb)), need_features)
        out = self.convs[2 * b](out, batch, s[up], noise[2 * b + 1], deltas.get(up), impl)
        out = self.convs[2 * b + 1](out, batch, s[same], noise[2 * b + 2], deltas.get(same), impl)
        return out, self.to_rgbs[b](out, batch, s[rgb], skip, deltas.get(rgb), impl)

    @staticmethod
    def _first_per_sample_block(param: torch.Tensor, batch: int, n_blocks: int, impl: str) -> int:
        """The first block that `auto` runs one sample at a time (n_blocks: none): the blocks `ops.per_sample_pays`
        picks (CPU batches, large outputs), where grouped convs with groups=B scale badly and slicing packed
        channels-last features per sample costs strided copies around every conv."""
        if impl != "auto":
            return n_blocks
        return next((b for b in range(n_blocks) if ops.per_sample_pays(param.device, batch, (2 ** (b + 3)) ** 2)),
                    n_blocks)

    def _blocks_for(self, render_size: int | None) -> int:
        """How many up-sampling blocks draw a render_size image (all of them for None)."""
        if render_size is None:
            return len(self.to_rgbs)
        valid = [2 ** log_res for log_res in range(3, self.config.log_size + 1)]
        if render_size not in valid:
            raise ValueError(f"render_size must be one of {valid} for this {self.size}px generator, "
                             f"got {render_size!r}")
        return valid.index(render_size) + 1
