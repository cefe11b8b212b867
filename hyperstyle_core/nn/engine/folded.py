"""The generator's layers in their folded inference forms, on packed features [1, B*C, H, W].

StyledConv: leaky_relu(z) * sqrt(2) == leaky_relu(sqrt(2) * z) because sqrt(2) > 0, so the gain goes into the
[B, out] demodulation factors, the bias and the noise weight, and the bias is added inside the conv (or FIR) pass:
what is left is one pass adding the noise and one in-place activation, two passes over the features instead of
four. ToRGB: the bias rides in the 1x1 conv's pass. Equal to `nn.stylegan2`'s layers up to float rounding (the
products are formed in another order).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops
from ..stylegan2 import ModulatedConv2d, NoiseInjection, StyledConv, ToRGB
from . import fast_ops
from .plan import InferencePlan

GAIN = ops.SQRT2        # the activation gain folded into each StyledConv


def folded_weight(conv: ModulatedConv2d, style: torch.Tensor, delta: torch.Tensor | None,
                  gain: float = 1.0) -> torch.Tensor:
    """The layer's per-sample weights [B, out, in, k, k] for style [B, in], times gain."""
    return fast_ops.modulated_weight_inplace(conv.weight[0], style, conv.scale, delta, conv.demodulate, gain)


def folded_bias(layer: StyledConv, batch: int) -> torch.Tensor:
    """The activation bias times the folded gain, for packed features [1, B*out, H, W]: [B*out]."""
    return layer.activate.bias.repeat(batch) * GAIN


def noise_term(noise_layer: NoiseInjection, batch: int, channels: int, height: int, width: int,
               like: torch.Tensor, noise: torch.Tensor | None, gain: float = 1.0) -> torch.Tensor:
    """weight * noise * gain, broadcastable to packed features [1, B*channels, height, width].

    Fresh noise (noise None) is drawn [B, 1, H, W] as the reference draws it and, for B > 1, spread over each
    sample's channels; a single sample's stays [1, 1, H, W] and broadcasts."""
    if noise is None:
        noise = like.new_empty(batch, 1, height, width).normal_()
        if batch > 1:
            noise = noise.expand(batch, channels, height, width).reshape(1, batch * channels, height, width)
    return (noise_layer.weight * gain) * noise


def styled_conv(layer: StyledConv, x: torch.Tensor, batch: int, style: torch.Tensor, noise: torch.Tensor | None,
                delta: torch.Tensor | None) -> torch.Tensor:
    """StyledConv on packed x [1, B*in, H, W] -> [1, B*out, H', W']."""
    conv = layer.conv
    out = fast_ops.conv_packed(x, folded_weight(conv, style, delta, GAIN), conv.upsample,
                               conv.blur.kernel if conv.upsample else None, folded_bias(layer, batch))
    _, channels, height, width = out.shape
    out.add_(noise_term(layer.noise, batch, channels // batch, height, width, out, noise, GAIN))
    return F.leaky_relu_(out, ops.LEAKY_SLOPE)


def to_rgb(layer: ToRGB, x: torch.Tensor, batch: int, style: torch.Tensor, skip: torch.Tensor | None,
           delta: torch.Tensor | None, plan: InferencePlan) -> torch.Tensor:
    """ToRGB on packed x [1, B*in, H, W] (skip [1, B*3, H/2, W/2] or None) -> [1, B*3, H, W]."""
    out = fast_ops.conv_packed(x, folded_weight(layer.conv, style, delta), bias=layer.bias.view(-1).repeat(batch))
    return out if skip is None else out.add_(upsampled_skip(layer, skip, plan))


def upsampled_skip(layer: ToRGB, skip: torch.Tensor, plan: InferencePlan) -> torch.Tensor:
    """The RGB skip [1, B*3, H, W] up-sampled 2x as the plan says: two 1-D passes or one 2-D FIR filter."""
    upsample = fast_ops.upsample2x_separable if plan.separable_skips else ops.upsample2x
    return upsample(skip, layer.upsample.kernel)
