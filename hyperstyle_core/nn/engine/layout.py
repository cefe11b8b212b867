"""Memory layout of the encoders' static conv weights: channels-last on CPU, the plain layout elsewhere.

Why: on CPU, oneDNN runs a conv whose input or weight is channels-last with its direct NHWC kernels and keeps the
output channels-last, so activations are never reordered to and from its blocked layout around each conv. A
channels-last weight alone is enough to turn a whole encoder channels-last; a channels-last input with plain weights
is not, since PyTorch then copies every weight into channels-last on every call. The plan
(`InferencePlan.conv_weight_format`) says which layout a device gets; loading applies it.

Inference only: training puts the plain layout back (train.coach), because oneDNN's AVX2 kernel for a 1x1 conv's
weight gradient crashed the process on channels-last activations (torch 2.14.1, the hypernetwork's downsample convs).

Only kernels larger than 1x1 move: a 1x1 kernel's two layouts are the same bytes, and the hypernetwork reads its big
1x1 output layers as matrices. The StyleGAN2 generator has no nn.Conv2d: its weights are modulated per sample.
"""
from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch import nn

# Reads the state-dict tensor `key` from its file straight into a channels-last tensor; None when it cannot.
ChannelsLastReader = Callable[[str, torch.Tensor], "torch.Tensor | None"]


def spatial_convs(model: nn.Module) -> Iterator[tuple[str, nn.Conv2d]]:
    """(state-dict prefix, module) of every nn.Conv2d with a kernel larger than 1x1."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d) and tuple(module.kernel_size) != (1, 1):
            yield name, module


def set_conv_weight_layout(model: nn.Module, memory_format: torch.memory_format,
                           read: ChannelsLastReader | None = None) -> int:
    """Give every spatial conv weight `memory_format`; returns how many weights changed layout. Values are unchanged.

    read: loads a weight from its file straight into channels-last (io.checkpoints does this for memory-mapped
    weights, so the mapped pages are never touched and the relaid copy replaces them instead of adding to them).
    """
    changed = 0
    with torch.no_grad():
        for name, conv in spatial_convs(model):
            weight = conv.weight
            if weight.is_contiguous(memory_format=memory_format):
                continue
            relaid = None
            if read is not None and memory_format == torch.channels_last:
                relaid = read(f"{name}.weight" if name else "weight", weight)
            if relaid is None:
                relaid = weight.contiguous(memory_format=memory_format)
            weight.data = relaid        # the same Parameter: tied weights and optimisers keep pointing at it
            changed += 1
    return changed
