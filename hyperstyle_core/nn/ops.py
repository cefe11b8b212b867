"""StyleGAN2's math as plain functions: FIR filtering, activations, modulated convolution.

This is the reference the networks are written with (and what training differentiates). The inference engine
(`nn/engine`) computes the same functions in faster forms and is tested against these. Pure PyTorch: CPU, CUDA and
MPS alike.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
LEAKY_SLOPE = 0.2                       # StyleGAN2's fused leaky ReLU
IMPLS = ("auto", "ref", "grouped")      # modulated-conv implementations; "auto" is the official grouped conv


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
    if up > 1:
        x = x.reshape(batch, channels, height, 1, width, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(batch, channels, height * up, width * up)
    x = pad_or_crop(x, pad)
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    x = F.conv2d(x, weight, groups=channels)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def pad_or_crop(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """Pad both spatial axes of [B, C, H, W] by (before, after) zeros; negative amounts crop instead."""
    before, after = pad
    x = F.pad(x, [max(before, 0), max(after, 0)] * 2)
    if before < 0 or after < 0:
        top, bottom = max(-before, 0), max(-after, 0)
        x = x[:, :, top:x.shape[2] - bottom, top:x.shape[3] - bottom]
    return x


def blur(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """FIR blur without resampling ([B, C, H, W] -> [B, C, H + pad0 + pad1 - k + 1, ...])."""
    return upfirdn2d(x, kernel, pad=pad)


def upsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """2x FIR up-sampling of a ToRGB skip: [B, C, H, W] -> [B, C, 2H, 2W]; kernel carries the gain 4."""
    return upfirdn2d(x, kernel, up=2, pad=upsample2x_pad(kernel))


def upsample2x_pad(kernel: torch.Tensor) -> tuple[int, int]:
    """upfirdn2d's padding of the zero-inserted image for a 2x up-sampling by `kernel` [k, k]."""
    p = kernel.shape[0] - 2
    return (p + 1) // 2 + 1, p // 2


def transposed_conv_blur_pad(kernel: torch.Tensor, k: int) -> tuple[int, int]:
    """The blur padding after a stride-2 transposed k x k conv, so that the output is exactly twice the input."""
    p = kernel.shape[0] - 2 - (k - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = LEAKY_SLOPE,
                     scale: float = SQRT2) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2), bias [C] broadcast over channel dim 1."""
    if bias is not None:
        x = x + bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope=negative_slope) * scale


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Normalise each row of [B, D] to unit mean square."""
    return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, scale: float,
                     delta: torch.Tensor | None, demodulate: bool) -> torch.Tensor:
    """Per-sample conv weights `scale * (W * (1 + delta) * s)`, then demodulation (the official order of products).

    Args:
        weight: [out, in, k, k] shared kernel.
        styles: [B, in] modulation (style-space) values.
        scale: equalised-lr constant 1/sqrt(in*k*k).
        delta: [B, out, in, k, k] (or broadcastable, e.g. [out, in, k, k]) relative offset, or None.
        demodulate: normalise each output filter to unit norm (3x3 convs; not ToRGB).
    Returns:
        [B, out, in, k, k].
    """
    batch, in_channels = styles.shape
    style = styles.view(batch, 1, in_channels, 1, 1)
    w = weight.unsqueeze(0)
    if delta is None:
        w = scale * w * style
    else:
        # The official association order, so that float rounding matches.
        w = scale * (w * (1 + delta) * style)
    if demodulate:
        demod = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8)
        w = w * demod.view(batch, -1, 1, 1, 1)
    return w


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
        upsample: transposed stride-2 conv followed by the 4x4 FIR blur (kernel with gain 4).
        blur_kernel: [4, 4] FIR kernel, needed when upsample.
        impl: "ref" (a per-sample loop: the specification), "grouped" or "auto" (one grouped conv over the batch,
            as the official code computes it).
    Returns:
        [B, out, H', W'] with H' = 2H if upsample else H.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    if upsample and blur_kernel is None:
        raise ValueError("modulated_conv2d(upsample=True) needs the blur_kernel")
    batch, in_channels = x.shape[:2]
    assert_shape(styles, [batch, in_channels], "styles")
    w = modulated_weight(weight, styles, scale, delta, demodulate)      # [B, out, in, k, k]
    if impl == "ref":
        return torch.cat([_conv_one_sample(x[i:i + 1], w[i], upsample, blur_kernel) for i in range(batch)])
    return _conv_grouped(x, w, upsample, blur_kernel)


def _conv_one_sample(x: torch.Tensor, w: torch.Tensor, upsample: bool,
                     blur_kernel: torch.Tensor | None) -> torch.Tensor:
    """One sample [1, in, H, W] with its own weights [out, in, k, k], written as plainly as possible."""
    k = w.shape[-1]
    if upsample:
        out = F.conv_transpose2d(x, w.transpose(0, 1), padding=0, stride=2)  # conv_transpose wants [in, out, k, k]
        return blur(out, blur_kernel, pad=transposed_conv_blur_pad(blur_kernel, k))
    return F.conv2d(x, w, padding=k // 2)


def _conv_grouped(x: torch.Tensor, w: torch.Tensor, upsample: bool, blur_kernel: torch.Tensor | None) -> torch.Tensor:
    """The batch as one grouped conv: samples stacked along channels, one group per sample (the official form)."""
    batch, out_channels, in_channels, k, _ = w.shape
    packed = x.reshape(1, batch * in_channels, x.shape[2], x.shape[3])
    if upsample:
        wt = w.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
        out = F.conv_transpose2d(packed, wt, padding=0, stride=2, groups=batch)
        out = blur(out, blur_kernel, pad=transposed_conv_blur_pad(blur_kernel, k))
    else:
        out = F.conv2d(packed, w.reshape(batch * out_channels, in_channels, k, k), padding=k // 2, groups=batch)
    return out.reshape(batch, out_channels, out.shape[2], out.shape[3])
