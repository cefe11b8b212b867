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
LEAKY_SLOPE = 0.2       # StyleGAN2's fused leaky ReLU
IMPLS = ("auto", "ref", "grouped")     # modulated-conv implementations: auto = the fast path on every device
# `auto` runs the packed batch as one grouped conv, or as one plain conv per sample (conv_packed's "per_sample")
# where grouped convs with groups=B scale badly on CPU: outputs of 512x512 and more (measured on AVX-512 oneDNN:
# 1.22x per image at 512, 1.54x at 1024, 2.43x for the 512->1024 transposed conv at batch 4, where one conv per
# sample scales linearly), and from 256x256, where one sample's maps reach 32 MiB and its block then runs in strips
# (nn/strips.py): on the 2-core AVX2 CPU a batch of 4 took 1.47 s per image and generator pass with per-sample blocks
# from 512 px, 1.36 s from 256 px (medians of 5; batch 1: 1.36 s). Below that the grouped conv is as fast or faster.
PER_SAMPLE_MIN_AREA = 256 * 256


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


def separable_taps(kernel: torch.Tensor) -> list[float] | None:
    """The 1-D taps u with outer(u, u) == kernel (make_blur_kernel's kernels, gain included), or None when the
    kernel (a buffer loaded from a checkpoint) is not such an outer product."""
    k = kernel.detach().to("cpu", torch.float64)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or float(k.sum()) <= 0:
        return None
    taps = k.sum(0) / k.sum().sqrt()
    if not torch.allclose(torch.outer(taps, taps), k, rtol=1e-6, atol=1e-9):
        return None
    return taps.tolist()


def upsample2x_separable(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`upsample2x` as two 1-D polyphase passes (fast path; same values up to float rounding).

    Each output row or column of a 2x up-sampling takes half the taps: a few scaled, shifted copies of the input
    added up, per phase, then the two phases interleaved. On CPU this is three times faster for the 3-channel RGB
    skips than upfirdn2d as one depthwise transposed conv (9 against 27 ms at 1024 px), which oneDNN runs poorly at
    three channels. Kernels that are not an outer product of 1-D taps take `upsample2x`.
    x: [B, C, H, W] -> [B, C, 2H, 2W] (contiguous); kernel: [k, k], gain 4.
    """
    taps = separable_taps(kernel)
    if taps is None:
        return upsample2x(x, kernel)
    p = len(taps) - 2
    pad0 = (p + 1) // 2 + 1                                       # upsample2x's padding of the up-sampled image
    x = x.contiguous()
    return _upsample2x_along(_upsample2x_along(x, taps, pad0, -1), taps, pad0, -2)


def _upsample2x_along(x: torch.Tensor, taps: list[float], pad0: int, dim: int) -> torch.Tensor:
    """2x FIR up-sampling along `dim` (-1: width, -2: height) of upfirdn2d's zero-inserted, pad0-padded signal.

    Output sample 2i + r is the sum over taps t with r + t - pad0 even of flipped[t] * x[i + (r + t - pad0) / 2]."""
    n = x.shape[dim]
    flipped = taps[::-1]
    terms = [(r, (r + t - pad0) // 2, flipped[t]) for r in (0, 1) for t in range(len(taps)) if (r + t - pad0) % 2 == 0]
    before = max(0, -min(offset for _, offset, _ in terms))
    after = max(0, max(offset for _, offset, _ in terms))
    padded = F.pad(x, (before, after) if dim == -1 else (0, 0, before, after))
    phases = []
    for phase in (0, 1):
        acc = None
        for _, offset, tap in (term for term in terms if term[0] == phase):
            part = padded.narrow(dim, offset + before, n) * tap
            acc = part if acc is None else acc.add_(part)
        phases.append(acc)
    return torch.stack(phases, dim=dim).flatten(dim - 1, dim)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = LEAKY_SLOPE,
                     scale: float = SQRT2, inplace: bool = False) -> torch.Tensor:
    """leaky_relu(x + bias) * sqrt(2), bias broadcast over channel dim 1.

    inplace=True overwrites x (same values; saves three full-size temporaries at high resolution).
    """
    bias_view = None if bias is None else bias.view(1, bias.shape[0], *([1] * (x.ndim - 2)))
    if inplace:
        if bias_view is not None:
            x.add_(bias_view)
        return F.leaky_relu_(x, negative_slope).mul_(scale)
    if bias_view is not None:
        x = x + bias_view
    return F.leaky_relu(x, negative_slope=negative_slope) * scale


def pixel_norm(x: torch.Tensor) -> torch.Tensor:
    """Normalise each row of [B, D] to unit mean square."""
    return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


def modulated_weight(weight: torch.Tensor, styles: torch.Tensor, scale: float,
                     delta: torch.Tensor | None, demodulate: bool, gain: float = 1.0) -> torch.Tensor:
    """Per-sample conv weights `scale * (W * (1 + delta) * s)`, then demodulation, times `gain`.

    Args:
        weight: [out, in, k, k] shared kernel.
        styles: [B, in] modulation (style-space) values.
        scale: equalised-lr constant 1/sqrt(in*k*k).
        delta: [B, out, in, k, k] (or broadcastable, e.g. [out, in, k, k]) relative offset, or None.
        gain: a positive factor on the result (1 = the official weights; the generator's folded activation gain).
    Returns:
        [B, out, in, k, k].
    """
    if not torch.is_grad_enabled():
        return _modulated_weight_inplace(weight, styles, scale, delta, demodulate, gain)
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
    return w if gain == 1.0 else w * gain


def _modulated_weight_inplace(weight: torch.Tensor, styles: torch.Tensor, scale: float,
                              delta: torch.Tensor | None, demodulate: bool, gain: float = 1.0) -> torch.Tensor:
    """`modulated_weight` without autograd: one [B, out, in, k, k] buffer instead of five, bit-identical.

    Each product is formed in the reference's order (x * y == y * x exactly in IEEE arithmetic), so rounding is the
    same; only the temporaries are gone (the 512-channel layers' weights are 9 MiB per sample and per op).
    """
    batch, in_channels = styles.shape
    style = styles.view(batch, 1, in_channels, 1, 1)
    if delta is None:
        w = torch.mul(weight * scale, style)               # (scale * W) * s, as the reference associates it
    else:
        w = torch.add(delta, 1)                             # the one full-size buffer
        if w.shape[0] != batch or w.ndim != 5:              # a delta shared by the batch: give each sample a copy
            w = w.expand(batch, *weight.shape).clone()
        w.mul_(weight).mul_(style).mul_(scale)              # ((W * (1 + d)) * s) * scale
    if demodulate:
        demod = torch.rsqrt(w.square().sum([2, 3, 4]).add_(1e-8))
        if gain != 1.0:
            demod.mul_(gain)                                # rides on the [B, out] factors, not a pass over w
        w.mul_(demod.view(batch, -1, 1, 1, 1))
    elif gain != 1.0:
        w.mul_(gain)
    return w


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int],
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """Depthwise FIR filter without resampling; same result as `blur` (plus a per-channel `bias` added in the same
    pass), keeps the memory format (fast path)."""
    channels = x.shape[1]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    if pad[0] == pad[1] and pad[0] >= 0:
        return F.conv2d(x, weight, bias, padding=pad[0], groups=channels)
    return F.conv2d(blur_pad(x, pad), weight, bias, groups=channels)


def blur_pad(x: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    x = F.pad(x, [max(pad[0], 0), max(pad[1], 0)] * 2)
    if pad[0] < 0 or pad[1] < 0:
        x = x[:, :, max(-pad[0], 0): x.shape[2] - max(-pad[1], 0), max(-pad[0], 0): x.shape[3] - max(-pad[1], 0)]
    return x


def _upsample_blur_pad(blur_kernel: torch.Tensor, k: int) -> tuple[int, int]:
    p = blur_kernel.shape[0] - 2 - (k - 1)
    return (p + 1) // 2 + 1, p // 2 + 1


def conv_packed(x: torch.Tensor, w: torch.Tensor, upsample: bool = False,
                blur_kernel: torch.Tensor | None = None, impl: str = "auto",
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample convolution of a packed batch.

    Args:
        x: [1, B*in, H, W] (samples stacked along channels); any memory format (channels_last is fastest on CPU).
        w: [B, out, in, k, k] per-sample weights.
        upsample: transposed stride-2 conv followed by the FIR blur.
        impl: "ref" runs the per-sample reference loop, "grouped" one grouped conv, "per_sample" one plain conv per
            sample, "auto" picks grouped or per_sample by the output size (PER_SAMPLE_MIN_AREA).
        bias: [B*out] added to the output (the fast paths add it inside the conv or FIR pass), or None.
    Returns:
        [1, B*out, H', W'] in the memory format of x.
    """
    batch, out_channels, in_channels, k, _ = w.shape
    if impl == "ref":
        samples = x.reshape(batch, in_channels, x.shape[2], x.shape[3])
        out = torch.cat([_conv_one_ref(samples[i:i + 1], w[i], upsample, blur_kernel) for i in range(batch)], 0)
        out = out.reshape(1, batch * out_channels, out.shape[2], out.shape[3])
        return out if bias is None else out + bias.view(1, -1, 1, 1)
    if impl == "per_sample" or (impl == "auto" and _per_sample_pays(x, batch, upsample)):
        parts = [_conv_one_fast(x[:, i * in_channels:(i + 1) * in_channels], w[i:i + 1], upsample, blur_kernel,
                                None if bias is None else bias[i * out_channels:(i + 1) * out_channels])
                 for i in range(batch)]
        return torch.cat(parts, 1)
    return _conv_one_fast(x, w, upsample, blur_kernel, bias)


def per_sample_pays(device: torch.device, batch: int, out_pixels: int) -> bool:
    """The `auto` rule: samples one at a time for CPU batches whose output has at least PER_SAMPLE_MIN_AREA pixels
    (measured on CPU only; GPUs keep the grouped conv). The generator applies it per block (whole blocks per sample),
    conv_packed per conv."""
    return device.type == "cpu" and batch > 1 and out_pixels >= PER_SAMPLE_MIN_AREA


def _per_sample_pays(x: torch.Tensor, batch: int, upsample: bool) -> bool:
    return per_sample_pays(x.device, batch, x.shape[2] * x.shape[3] * (4 if upsample else 1))


def _conv_one_fast(x: torch.Tensor, w: torch.Tensor, upsample: bool, blur_kernel: torch.Tensor | None,
                   bias: torch.Tensor | None = None) -> torch.Tensor:
    """Grouped conv of packed x [1, B*in, H, W] with w [B, out, in, k, k] (B = 1 makes it a plain conv)."""
    batch, out_channels, in_channels, k, _ = w.shape
    if upsample:
        wt = w.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
        y = F.conv_transpose2d(x, wt, padding=0, stride=2, groups=batch)
        return fir_filter(y, blur_kernel, _upsample_blur_pad(blur_kernel, k), bias)
    return F.conv2d(x, w.reshape(batch * out_channels, in_channels, k, k), bias, padding=k // 2, groups=batch)


def _conv_one_ref(x: torch.Tensor, w: torch.Tensor, upsample: bool, blur_kernel: torch.Tensor | None) -> torch.Tensor:
    """Reference: one sample [1, in, H, W] with its own weights [out, in, k, k], written as plainly as possible."""
    k = w.shape[-1]
    if upsample:
        out = F.conv_transpose2d(x, w.transpose(0, 1), padding=0, stride=2)  # conv_transpose wants [in, out, k, k]
        return blur(out, blur_kernel, pad=_upsample_blur_pad(blur_kernel, k))
    return F.conv2d(x, w, padding=k // 2)


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
        impl: "ref" (per-sample loop, the specification), "grouped" (one grouped conv over the batch), "auto"
            (chosen per layer: grouped, or one plain conv per sample for large outputs, see conv_packed).
    Returns:
        [B, out, H', W'] with H' = 2H if upsample else H.
    """
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {', '.join(IMPLS)}, got {impl!r}")
    batch, in_channels, height, width = x.shape
    if upsample and blur_kernel is None:
        raise ValueError("modulated_conv2d(upsample=True) needs the blur_kernel")
    w = modulated_weight(weight, styles, scale, delta, demodulate)  # [B, out, in, k, k]
    out = conv_packed(x.reshape(1, batch * in_channels, height, width), w, upsample, blur_kernel, impl)
    return out.reshape(batch, -1, out.shape[2], out.shape[3])
