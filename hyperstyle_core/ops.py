"""Low-level StyleGAN2 math as plain functions: FIR filtering, activations, modulated convolution.

Every op has a readable reference path; fast paths sit beside it and must match it (tests/core/test_ops.py).
Nothing here is compiled: pure PyTorch, so CPU, CUDA and MPS all work.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)


def assert_shape(tensor: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ValueError if `tensor` does not have `shape` (None matches any size)."""
    if tensor.ndim != len(shape) or any(want is not None and got != want for got, want in zip(tensor.shape, shape)):
        wanted = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} has shape {list(tensor.shape)}, expected {wanted}")


def make_blur_kernel(taps: Sequence[float], gain: float = 1.0) -> torch.Tensor:
    """2-D FIR kernel: outer(taps, taps) normalised to sum 1, times `gain` (factor**2 when up-sampling)."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    k /= k.sum()
    return k * gain


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Up-sample by zero insertion, pad, FIR filter, down-sample (rosinality `upfirdn2d`, symmetric in x and y).

    Args:
        x: [B, C, H, W].
        kernel: [kh, kw] FIR filter (applied as a true convolution, i.e. flipped).
        up, down: integer factors.
        pad: (before, after) padding in pixels of the up-sampled image, applied to both axes; may be negative.
    Returns:
        [B, C, (H*up + pad0 + pad1 - kh) // down + 1, ...].
    """
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape
    pad0, pad1 = pad
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = F.pad(x, [max(pad0, 0), max(pad1, 0), max(pad0, 0), max(pad1, 0)])
    if pad0 < 0 or pad1 < 0:
        x = x[:, :, max(-pad0, 0): x.shape[2] - max(-pad1, 0), max(-pad0, 0): x.shape[3] - max(-pad1, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    x = F.conv2d(x, weight, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """FIR blur without resampling ([B, C, H, W] -> [B, C, H + pad0 + pad1 - k + 1, ...])."""
    return upfirdn2d(x, kernel, pad=pad)


def upsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x FIR up-sampling of a ToRGB skip: [B, C, H, W] -> [B, C, 2H, 2W]; kernel carries the gain 4."""
    p = kernel.shape[0] - 2
    return upfirdn2d(x, kernel, up=2, pad=((p + 1) // 2 + 1, p // 2))


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2), bias broadcast over channel dim 1."""
    if bias is not None:
        x = x + bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope=negative_slope) * scale


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Normalise each row of [B, D] to unit mean square."""
    return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, scale: float,
                     delta: torch.Tensor | None, demodulate: bool) -> torch.Tensor:
    """Per-sample conv weights `scale * (W * (1 + delta) * s)`, then demodulation.

    Args:
        weight: [out, in, k, k] shared kernel.
        styles: [B, in] modulation (style-space) values.
        scale: equalised-lr constant 1/sqrt(in*k*k).
        delta: [B, out, in, k, k] (or broadcastable, e.g. [out, in, k, k]) relative offset, or None.
    Returns:
        [B, out, in, k, k].
    """
    batch, in_channels = styles.shape
    style = styles.view(batch, 1, in_channels, 1, 1)
    w = weight.unsqueeze(0)
    if delta is None:
        w = scale * w * style
    else:
        # Same association order as the official code so float rounding matches.
        w = scale * (w * (1 + delta) * style)
    if demodulate:
        demod = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8)
        w = w * demod.view(batch, -1, 1, 1, 1)
    return w


def _conv_one(x: torch.Tensor, w: torch.Tensor, upsample: bool, padding: int,
              blur_kernel: torch.Tensor | None, groups: int) -> torch.Tensor:
    """Plain or transposed-stride-2 convolution of x with w for `groups` stacked samples."""
    if upsample:
        out = F.conv_transpose2d(x, w, padding=0, stride=2, groups=groups)
        p = blur_kernel.shape[0] - 2 - (w.shape[-1] - 1)
        return blur(out, blur_kernel, pad=((p + 1) // 2 + 1, p // 2 + 1))
    return F.conv2d(x, w, padding=padding, groups=groups)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, *, scale: float,
                     delta: torch.Tensor | None = None, demodulate: bool = True, upsample: bool = False,
                     blur_kernel: torch.Tensor | None = None, impl: str = "auto") -> torch.Tensor:
    """StyleGAN2 modulated convolution with optional HyperStyle weight offsets.

    Args:
        x: [B, in, H, W] input features.
        weight: [out, in, k, k] shared kernel (the official [1, out, in, k, k] parameter squeezed).
        styles: [B, in] style-space values (output of the layer's modulation).
        scale: 1/sqrt(in*k*k).
        delta: [B, out, in, k, k] relative offsets (`W * (1 + delta)`), or None.
        demodulate: normalise each output filter (3x3 convs; not ToRGB).
        upsample: transposed stride-2 conv followed by the 4x4 FIR blur (kernel with gain 4, pad (1, 1)).
        impl: "ref" (per-sample loop, the specification), "grouped" (one grouped conv over the batch), "auto".
    Returns:
        [B, out, H', W'] with H' = 2H if upsample else H.
    """
    batch, in_channels, height, width = x.shape
    out_channels, _, k, _ = weight.shape
    if upsample and blur_kernel is None:
        raise ValueError("modulated_conv2d(upsample=True) needs the blur_kernel")
    w = modulated_weight(weight, styles, scale, delta, demodulate)  # [B, out, in, k, k]
    padding = k // 2
    if impl == "ref":
        outs = []
        for i in range(batch):
            wi = w[i].transpose(0, 1) if upsample else w[i]  # conv_transpose wants [in, out, k, k]
            outs.append(_conv_one(x[i:i + 1], wi, upsample, padding, blur_kernel, groups=1))
        return torch.cat(outs, 0)
    if impl not in ("auto", "grouped"):
        raise ValueError(f"impl must be 'auto', 'ref' or 'grouped', got {impl!r}")
    x = x.reshape(1, batch * in_channels, height, width)
    if upsample:
        w = w.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
    else:
        w = w.reshape(batch * out_channels, in_channels, k, k)
    out = _conv_one(x, w, upsample, padding, blur_kernel, groups=batch)
    return out.reshape(batch, out_channels, out.shape[2], out.shape[3])
