"""Large generator blocks computed in horizontal strips (CPU inference, one sample at a time).

A 256- to 1024-px block makes several feature maps of tens of MiB per pass. glibc serves allocations that large with
fresh mmaps and hands them back to the OS when they are freed (above its dynamic threshold, 32 MiB at most on 64-bit),
so every pass page-faults them in again unless the allocator is tuned, which only our command line does (we change
nothing process-wide in ComfyUI, where we are a guest). In strips of at most `plan.strip_bytes` per buffer a block
reuses the same heap memory strip after strip and works on data that is still in cache.

Each strip is computed from the input rows its receptive field needs; rows next to a strip's edge that the whole-image
ops would have computed from rows outside the strip are computed and dropped, and the true image borders are padded
exactly as the whole-image ops pad them. The result equals the whole-image block up to float rounding.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from .. import ops
from ..stylegan2 import StyledConv, ToRGB
from . import fast_ops
from .folded import GAIN, folded_bias, folded_weight, noise_term, upsampled_skip
from .plan import InferencePlan


def strip_rows(width: int, channels: int, itemsize: int, strip_bytes: int) -> int:
    """Output rows per strip: about strip_bytes per feature buffer, even, at least 8."""
    rows = strip_bytes // max(1, width * channels * itemsize)
    return max(8, rows - rows % 2)


def block_in_strips(up: StyledConv, same: StyledConv, to_rgb: ToRGB, x: torch.Tensor, skip: torch.Tensor,
                    styles: Sequence[torch.Tensor], noises: Sequence[torch.Tensor | None],
                    deltas: Sequence[torch.Tensor | None], plan: InferencePlan,
                    need_features: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
    """One up-sampling block (up conv, same-size conv, ToRGB) of one sample, strip by strip.

    Args:
        up, same, to_rgb: the block's layers (run in their folded forms, nn/engine/folded.py).
        x: [1, in, H, W] input features (channels-last on CPU).
        skip: [1, 3, H, W] the RGB skip image so far.
        styles: style codes [1, in] for up, same and to_rgb.
        noises: the noise buffers [1, 1, 2H, 2W] of up and same (None draws fresh noise, as the layers do).
        deltas: the weight offsets of up, same and to_rgb (or None).
        plan: gives the strip size and the skip's up-sampling.
        need_features: assemble the block's output features (False for the last block: only its image is used).
    Returns:
        (features [1, out, 2H, 2W] or None, RGB skip [1, 3, 2H, 2W]).
    """
    height, width = x.shape[2], x.shape[3]
    out_h, out_w = 2 * height, 2 * width
    blur = up.conv.blur.kernel
    channels = same.conv.out_channel
    # Per-layer state computed once for all strips: weights with the folded gain, biases, noise terms.
    w_up = folded_weight(up.conv, styles[0], deltas[0], GAIN)
    w_same = folded_weight(same.conv, styles[1], deltas[1], GAIN)
    w_rgb = folded_weight(to_rgb.conv, styles[2], deltas[2])
    b_up, b_same, b_rgb = folded_bias(up, 1), folded_bias(same, 1), to_rgb.bias.view(-1)
    n_up = noise_term(up.noise, 1, up.conv.out_channel, out_h, out_w, x, noises[0], GAIN)      # [1, 1, 2H, 2W]
    n_same = noise_term(same.noise, 1, channels, out_h, out_w, x, noises[1], GAIN)
    rgb = upsampled_skip(to_rgb, skip, plan)                        # [1, 3, 2H, 2W]; strips add their ToRGB
    features = None
    if need_features:
        features = torch.empty(1, channels, out_h, out_w, dtype=x.dtype, device=x.device,
                               memory_format=torch.channels_last)
    rows = strip_rows(out_w, channels, x.element_size(), plan.strip_bytes)
    for top in range(0, out_h, rows):
        bottom = min(out_h, top + rows)
        # The same-size conv needs one row of the up conv's output above and below ...
        a_top, a_bottom = max(0, top - 1), min(out_h, bottom + 1)
        # ... and the up conv (stride-2 transposed 3x3, then the 4-tap FIR) is exact two output rows in from a
        # slab's inner edges: input rows [i0, i1) give output rows [2*i0 + 2, 2*i1 - 2) (all rows at image borders).
        i0, i1 = max(0, a_top // 2 - 1), min(height, (a_bottom + 1) // 2 + 1)
        a = fast_ops.conv_packed(x[:, :, i0:i1], w_up, True, blur, b_up)          # output rows [2*i0, 2*i1)
        a = a[:, :, a_top - 2 * i0:a_bottom - 2 * i0]
        a.add_(n_up[:, :, a_top:a_bottom])
        F.leaky_relu_(a, ops.LEAKY_SLOPE)
        b = fast_ops.conv_packed(a, w_same, False, None, b_same)                  # rows [a_top, a_bottom)
        b = b[:, :, top - a_top:bottom - a_top]
        if features is not None:
            # The noise add writes straight into the block's output rows (a channels-last row range is one
            # contiguous piece): the same pass as adding in place, and no copy of the strip afterwards.
            b = torch.add(b, n_same[:, :, top:bottom], out=features[:, :, top:bottom])
        else:
            b.add_(n_same[:, :, top:bottom])
        F.leaky_relu_(b, ops.LEAKY_SLOPE)
        rgb[:, :, top:bottom].add_(fast_ops.conv_packed(b, w_rgb, False, None, b_rgb))
    return features, rgb

