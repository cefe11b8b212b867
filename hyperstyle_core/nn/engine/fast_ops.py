"""The engine's forms of `nn.ops` (inference only): fewer passes over memory, the same values up to float rounding.

Each function names the reference it must match; tests/core/nn/engine compares them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import ops


def modulated_weight_inplace(weight: torch.Tensor, styles: torch.Tensor, scale: float, delta: torch.Tensor | None,
                             demodulate: bool, gain: float = 1.0) -> torch.Tensor:
    """`ops.modulated_weight` times `gain` in one [B, out, in, k, k] buffer instead of five; bit-identical for gain 1.

    Each product is formed in the reference's order (x * y == y * x exactly in IEEE arithmetic), so rounding is the
    same; only the temporaries are gone (a 512-channel layer's weights are 9 MiB per sample and per op). The gain
    (the generator's folded activation gain) rides on the [B, out] demodulation factors where there are some.
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
            demod.mul_(gain)
        w.mul_(demod.view(batch, -1, 1, 1, 1))
    elif gain != 1.0:
        w.mul_(gain)
    return w


def conv_packed(x: torch.Tensor, w: torch.Tensor, upsample: bool = False, blur_kernel: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """The grouped modulated conv of `ops.modulated_conv2d` on packed features, with the bias added in its pass.

    Args:
        x: [1, B*in, H, W] (samples stacked along channels); any memory format, kept.
        w: [B, out, in, k, k] per-sample weights (B = 1 makes it a plain conv).
        upsample: stride-2 transposed conv, then the FIR blur `blur_kernel` [4, 4] (gain 4).
        bias: [B*out] added inside the conv (or the blur) pass, or None.
    Returns:
        [1, B*out, H', W'] with H' = 2H if upsample else H.
    """
    batch, out_channels, in_channels, k, _ = w.shape
    if upsample:
        wt = w.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
        y = F.conv_transpose2d(x, wt, padding=0, stride=2, groups=batch)
        return fir_filter(y, blur_kernel, ops.transposed_conv_blur_pad(blur_kernel, k), bias)
    return F.conv2d(x, w.reshape(batch * out_channels, in_channels, k, k), bias, padding=k // 2, groups=batch)


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int],
               bias: torch.Tensor | None = None) -> torch.Tensor:
    """`ops.blur` plus a per-channel `bias` [C] in the same pass; keeps the memory format of x [B, C, H, W]."""
    channels = x.shape[1]
    kh, kw = kernel.shape
    weight = torch.flip(kernel, [0, 1]).to(x.dtype).view(1, 1, kh, kw).expand(channels, 1, kh, kw)
    if pad[0] == pad[1] and pad[0] >= 0:
        return F.conv2d(x, weight, bias, padding=pad[0], groups=channels)
    return F.conv2d(ops.pad_or_crop(x, pad), weight, bias, groups=channels)


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
    """`ops.upsample2x` as two 1-D polyphase passes: [B, C, H, W] -> [B, C, 2H, 2W] (contiguous); kernel [k, k].

    Each output row or column of a 2x up-sampling takes half the taps: a few scaled, shifted copies of the input
    added up, per phase, then the two phases interleaved. Kernels that are not an outer product of 1-D taps take
    `ops.upsample2x`.
    """
    taps = separable_taps(kernel)
    if taps is None:
        return ops.upsample2x(x, kernel)
    pad0 = ops.upsample2x_pad(kernel)[0]
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
