"""Fast mode's low-precision copies of the networks (opt-in; exact mode never uses them).

Where bf16 arithmetic is fast (CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX) fast mode runs bf16 copies of the
hypernetwork and the generator, cast once (`bf16_copy`; autocast would cast the weights again on every call, which
costs more than it saves on CPU). Elsewhere on CPU it keeps float32 networks and replaces the hypernetwork's big
matrices by int8 copies (`int8_products`):

The shared hypernet's w2 (512 MiB) and the 1x1 output layers (510 MiB together) are streamed from memory on every
iteration, and on CPU that streaming, not arithmetic, is their cost. Fast mode quantises them once to int8 with one
scale per output row (PyTorch's dynamic-quantisation kernels: activations are quantised per call) and keeps the
packed copies beside the model. Inference only: the copies are rebuilt when the weights change in place, and they
do not take part in autograd.
"""
from __future__ import annotations

import copy
import warnings
import weakref
from itertools import chain
from typing import Callable

import torch
from torch import nn

from .hypernetwork import HyperNetwork, Product, RefinementBlock

# Packed copies per hypernetwork module; weak so that dropping a model frees its copies too.
_CACHE: "weakref.WeakKeyDictionary[HyperNetwork, Int8Products]" = weakref.WeakKeyDictionary()
# bf16 copies per module, with the weight versions they were made from.
_BF16: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int], ...], nn.Module]]" = (
    weakref.WeakKeyDictionary())


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 convolutions and products are fast on `device`: CUDA GPUs with bf16 support, CPUs whose oneDNN
    has native bf16 (AVX-512 BF16 or AMX). On other CPUs bf16 is emulated and many times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def bf16_copy(module: nn.Module) -> nn.Module:
    """A bf16 copy of `module` (inference only), made on first use and kept while `module` lives; made again when
    its weights are replaced or changed in place. Costs half the module's float32 size in memory."""
    versions = _module_versions(module)
    cached = _BF16.get(module)
    if cached is None or cached[0] != versions:
        # deepcopy with every tensor pre-mapped to its cast: the float32 weights are never copied as they are.
        memo = {id(t): (nn.Parameter(t.detach().to(torch.bfloat16), requires_grad=False)
                        if isinstance(t, nn.Parameter) else t.detach().to(torch.bfloat16))
                for t in chain(module.parameters(), module.buffers()) if t.is_floating_point()}
        low = copy.deepcopy(module, memo).eval()
        for sub in low.modules():
            # Hooks on the original (a profiler's, a benchmark's timers) would fire on the copy with the original's
            # state: the copy starts without any.
            for hooks in (sub._forward_hooks, sub._forward_pre_hooks, sub._backward_hooks,
                          sub._backward_pre_hooks, sub._forward_hooks_with_kwargs, sub._forward_pre_hooks_with_kwargs,
                          sub._forward_hooks_always_called):
                hooks.clear()
        cached = (versions, low)
        _BF16[module] = cached
    return cached[1]


def _module_versions(module: nn.Module) -> tuple[tuple[int, int], ...]:
    return tuple((t.data_ptr(), t._version) for t in chain(module.parameters(), module.buffers()))


def int8_supported(device: torch.device) -> bool:
    """PyTorch's dynamic int8 linear runs on CPUs with the fbgemm (x86) or qnnpack (ARM) engine."""
    engines = torch.backends.quantized.supported_engines
    return device.type == "cpu" and any(e in engines for e in ("fbgemm", "x86", "qnnpack"))


class Int8Products:
    """int8 copies of a hypernetwork's big matrices, packed once (see the module docstring)."""

    def __init__(self, hypernet: HyperNetwork):
        shared = hypernet.shared_weight_hypernet
        self._shared = _pack_linear(shared.w2.detach().t(), shared.b2.detach())
        self._outputs: dict[str, Product] = {}
        for name, block in zip(hypernet.layer_names, hypernet.refinement_blocks):
            if isinstance(block, RefinementBlock):
                conv: nn.Conv2d = block.output[-1]
                weight = conv.weight.detach().view(conv.weight.shape[0], conv.weight.shape[1])
                self._outputs[name] = _pack_linear(weight, None if conv.bias is None else conv.bias.detach())
        self.versions = _weight_versions(hypernet)

    def shared(self) -> Product | None:
        return self._shared

    def output(self, name: str) -> Product | None:
        return self._outputs.get(name)


def int8_products(hypernet: HyperNetwork) -> Int8Products:
    """The cached int8 copies of `hypernet` (built on first use, ~1 s and +0.26 GiB; rebuilt if weights changed)."""
    cached = _CACHE.get(hypernet)
    if cached is None or cached.versions != _weight_versions(hypernet):
        cached = Int8Products(hypernet)
        _CACHE[hypernet] = cached
    return cached


def _weight_versions(hypernet: HyperNetwork) -> tuple[tuple[int, int], ...]:
    """(storage pointer, in-place version counter) of every packed weight: changes when they are replaced or edited."""
    tensors = [hypernet.shared_weight_hypernet.w2, hypernet.shared_weight_hypernet.b2]
    tensors += [p for block in hypernet.refinement_blocks if isinstance(block, RefinementBlock)
                for p in block.output[-1].parameters()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


def _pack_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> Product:
    """weight [out, in] (any strides), bias [out] -> x [B, in] -> x @ weight^T + bias with int8 weights.

    Symmetric per-row scales (max |w| / 127): the quantisation error is at most half a step of each row's range.
    """
    weight = weight.float().contiguous()
    scales = weight.abs().amax(dim=1).clamp_min(1e-12).div_(127.0).double()
    zero_points = torch.zeros(weight.shape[0], dtype=torch.long)
    with warnings.catch_warnings():
        # PyTorch marks the quantized-tensor constructors deprecated but ships no replacement for CPU int8 GEMM yet.
        warnings.simplefilter("ignore", UserWarning)
        qweight = torch.quantize_per_channel(weight, scales, zero_points, 0, torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float().contiguous())
    del weight, qweight
    linear: Callable[[torch.Tensor, object], torch.Tensor] = torch.ops.quantized.linear_dynamic

    def product(x: torch.Tensor) -> torch.Tensor:
        return linear(x.float().contiguous(), packed)

    return product
