"""Image encoders: the IR-SE50 W-encoder HyperStyle starts from, and ReStyle's e4e encoder (W+, 6-channel input).

State-dict keys equal the official `encoder.*` keys with the prefix removed.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..devices import full_float32
from .stylegan2 import EqualLinear

# IR-50 stage layout: (in_channel, depth, units); the first unit of each stage has stride 2.
IR50_STAGES = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (reduction 16, no biases)."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)   # >= 1 only matters for tiny test widths
        self.fc1 = nn.Conv2d(channels, hidden, kernel_size=1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = x.mean(dim=(2, 3), keepdim=True)
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(gate))))
        return x * gate


class BottleneckIRSE(nn.Module):
    """ArcFace IR-SE unit: BN, 3x3 conv, PReLU, 3x3 conv (strided), BN, SE; plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channel, depth, 1, stride, bias=False),
                                                nn.BatchNorm2d(depth))
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_se50_body(divisor: int = 1) -> nn.Sequential:
    """IR-SE50 units (widths / divisor; 1 for real models)."""
    units = []
    for in_channel, depth, n_units in IR50_STAGES:
        in_channel, depth = in_channel // divisor, depth // divisor
        units.append(BottleneckIRSE(in_channel, depth, 2))
        units += [BottleneckIRSE(depth, depth, 1) for _ in range(n_units - 1)]
    return nn.Sequential(*units)


def input_layer(in_channels: int, width: int = 64) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


class WEncoder(nn.Module):
    """pSp `WEncoder(50, 'ir_se')`: one W vector per image, repeated over the generator's n_latent entries."""

    def __init__(self, n_latent: int, style_dim: int = 512, divisor: int = 1):
        super().__init__()
        self.n_latent = n_latent
        self.input_layer = input_layer(3, 64 // divisor)
        self.body = ir_se50_body(divisor)
        self.linear = EqualLinear(512 // divisor, style_dim)

    @full_float32
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] (256x256 faces, 192x256 cars) -> offsets from latent_avg [B, n_latent, D]."""
        x = self.body(self.input_layer(images))
        w = self.linear(x.mean(dim=(2, 3)))
        return w.unsqueeze(1).repeat(1, self.n_latent, 1)


class GradualStyleBlock(nn.Module):
    """Strided 3x3 convs down to 1x1 then an EqualLinear (one W+ entry of e4e)."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        n_convs = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        for _ in range(n_convs - 1):
            layers += [nn.Conv2d(out_c, out_c, 3, 2, 1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(x).reshape(-1, self.out_c))


class ReStyleE4EEncoder(nn.Module):
    """ReStyle `ProgressiveBackboneEncoder(50, 'ir_se', n_styles)` at the Inference stage (all deltas on)."""

    def __init__(self, n_latent: int, in_channels: int = 6):
        super().__init__()
        self.n_latent = n_latent
        self.input_layer = input_layer(in_channels)
        self.body = ir_se50_body()
        self.styles = nn.ModuleList([GradualStyleBlock(512, 512, 16) for _ in range(n_latent)])

    @full_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 6, 256, 256] (image, current reconstruction) -> W+ residual [B, n_latent, 512]."""
        feats = self.body(self.input_layer(x))
        w0 = self.styles[0](feats)
        offsets = [torch.zeros_like(w0)] + [style(feats) for style in self.styles[1:]]
        return w0.unsqueeze(1) + torch.stack(offsets, dim=1)
