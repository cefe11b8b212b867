"""Fast mode's low-precision copies of the networks (opt-in; exact mode never uses them).

Where bf16 arithmetic is native (CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX) fast mode runs bf16 copies of
the hypernetwork and the generator, cast once (`bf16_copy`; autocast would cast the weights again on every call,
which costs more than it saves on CPU). Elsewhere on CPU it keeps float32 networks and replaces the hypernetwork's
big matrices by int8 copies (`int8_products`):

The shared hypernet's w2 (512 MiB) and the 1x1 output layers (510 MiB together) are streamed from memory on every
iteration, and on CPU that streaming, not arithmetic, is their cost. Fast mode quantises them once to int8 with one
scale per output row (PyTorch's dynamic-quantisation kernels: activations are quantised per call) and keeps the
packed copies beside the model. Inference only: the copies are rebuilt when the weights change in place, and they
do not take part in autograd.

Packing is a cost of the first fast inversion in a process, and fbgemm's prepack runs on one core, so the matrices
are packed in parts of at most PACK_PART_BYTES of float32 rows spread over the torch threads, each quantised in the
weight's own layout a chunk at a time (the transient float32 copies are a chunk per thread instead of a transposed
copy of the whole w2). A product is its parts' outputs side by side: the same numbers as one packed matrix
(quantisation is per row, activations are quantised per call).
"""
from __future__ import annotations

import copy
import warnings
import weakref
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Callable

import torch
from torch import nn

from ..hypernetwork import HyperNetwork, RefinementBlock

Product = Callable[[torch.Tensor], torch.Tensor]     # [B, in] -> [B, out]: a weight matrix applied

# Packed copies per hypernetwork module; weak so that dropping a model frees its copies too.
_CACHE: "weakref.WeakKeyDictionary[HyperNetwork, Int8Products]" = weakref.WeakKeyDictionary()
# bf16 copies per module, with the weight versions they were made from.
_BF16: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple[tuple[int, int], ...], nn.Module]]" = (
    weakref.WeakKeyDictionary())


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


class Int8Products:
    """int8 copies of a hypernetwork's big matrices, packed once (see the module docstring)."""

    def __init__(self, hypernet: HyperNetwork):
        shared = hypernet.shared_weight_hypernet
        matrices: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {
            _SHARED: (shared.w2.detach().t(), shared.b2.detach())}
        for name, block in zip(hypernet.layer_names, hypernet.refinement_blocks):
            if isinstance(block, RefinementBlock):
                conv: nn.Conv2d = block.output_layer
                weight = conv.weight.detach().view(conv.weight.shape[0], conv.weight.shape[1])
                matrices[name] = (weight, None if conv.bias is None else conv.bias.detach())
        products = pack_linears(matrices)
        self._shared = products.pop(_SHARED)
        self._outputs: dict[str, Product] = products
        self.versions = _weight_versions(hypernet)

    def shared(self) -> Product | None:
        return self._shared

    def output(self, name: str) -> Product | None:
        return self._outputs.get(name)


def int8_products(hypernet: HyperNetwork) -> Int8Products:
    """The cached int8 copies of `hypernet`: built on first use (seconds for FFHQ models), rebuilt if the weights
    changed."""
    cached = _CACHE.get(hypernet)
    if cached is None or cached.versions != _weight_versions(hypernet):
        cached = Int8Products(hypernet)
        _CACHE[hypernet] = cached
    return cached


def _weight_versions(hypernet: HyperNetwork) -> tuple[tuple[int, int], ...]:
    """(storage pointer, in-place version counter) of every packed weight: changes when they are replaced or edited."""
    tensors = [hypernet.shared_weight_hypernet.w2, hypernet.shared_weight_hypernet.b2]
    tensors += [p for block in hypernet.refinement_blocks if isinstance(block, RefinementBlock)
                for p in block.output_layer.parameters()]
    return tuple((t.data_ptr(), t._version) for t in tensors)


_SHARED = "shared_w2"           # w2's key beside the output layers' (generator names: conv1, convs.N, ...)
PACK_PART_BYTES = 256 * 2 ** 20     # float32 rows per packed part: w2 in two parts (more parts multiply kernel calls)
QUANTISE_CHUNK_BYTES = 32 * 2 ** 20  # float32 rows copied and quantised at a time within a part
PACK_WORKERS_MAX = 4                # each worker holds its part twice and a chunk thrice while it packs


def pack_linears(matrices: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                 part_bytes: int = PACK_PART_BYTES, chunk_bytes: int = QUANTISE_CHUNK_BYTES,
                 workers: int | None = None) -> dict[str, Product]:
    """int8 products for float32 matrices: {key: (weight [out, in] (any strides), bias [out] or None)} ->
    {key: x [B, in] -> x @ weight^T + bias}.

    Symmetric per-row scales (max |w| / 127): the quantisation error is at most half a step of each row's range.
    Every matrix is cut into parts of at most `part_bytes` of float32 rows, each quantised `chunk_bytes` at a time;
    the parts of all matrices are packed on `workers` threads (default: torch's thread count, at most
    PACK_WORKERS_MAX), since fbgemm's prepack runs on one core. A product of two parts calls the int8 kernel twice,
    about as fast as one call.
    """
    tasks: list[tuple[str, int, int]] = []              # (key, first row, end row) of every part
    for key, (weight, _) in matrices.items():
        rows, step = weight.shape[0], _rows_in(weight, part_bytes)
        tasks += [(key, top, min(rows, top + step)) for top in range(0, rows, step)]

    def pack(task: tuple[str, int, int]) -> object:
        key, top, bottom = task
        weight, bias = matrices[key]
        return _pack_rows(weight[top:bottom], None if bias is None else bias[top:bottom],
                          _rows_in(weight, chunk_bytes))

    workers = max(1, min(len(tasks), workers or min(torch.get_num_threads(), PACK_WORKERS_MAX)))
    with warnings.catch_warnings():
        # PyTorch marks the quantized-tensor constructors deprecated but ships no replacement for CPU int8 GEMM yet.
        # (Set here, not in the workers: the warning filters are process-wide and catch_warnings is not thread-safe.)
        warnings.simplefilter("ignore", UserWarning)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            packed = list(pool.map(pack, tasks))
    parts: dict[str, list[object]] = {key: [] for key in matrices}
    for (key, _, _), part in zip(tasks, packed):
        parts[key].append(part)
    return {key: _product(key_parts) for key, key_parts in parts.items()}


def _rows_in(weight: torch.Tensor, n_bytes: int) -> int:
    return max(1, n_bytes // (4 * weight.shape[1]))


def _pack_rows(weight: torch.Tensor, bias: torch.Tensor | None, chunk_rows: int) -> object:
    """weight [rows, in] (any strides, any float dtype) -> fbgemm's packed int8 rows with per-row scales.

    Quantised chunk_rows at a time in the weight's own layout (w2's rows are its transpose's columns: a float32
    transposed copy of them cost more than the quantisation), into one int8 buffer that is packed at the end. The
    same bytes as torch.quantize_per_channel of the whole float32 matrix: it also rounds w * (1 / scale) in float32
    to the nearest even."""
    rows = weight.shape[0]
    data = torch.empty(rows, weight.shape[1], dtype=torch.int8)
    scales = torch.empty(rows, dtype=torch.float32)
    for top in range(0, rows, chunk_rows):
        bottom = min(rows, top + chunk_rows)
        chunk = weight[top:bottom].float()                   # a view where weight is float32 already
        scale = torch.amax(chunk.abs(), dim=1).clamp_min_(1e-12).div_(127.0)
        scales[top:bottom] = scale
        data[top:bottom] = chunk.mul(scale.reciprocal().unsqueeze(1)).round_().clamp_(-128, 127).to(torch.int8)
    # The constructor that wraps int8 values and their scales (PyTorch has no public one for per-channel tensors).
    qweight = torch._make_per_channel_quantized_tensor(data, scales.double(), torch.zeros(rows, dtype=torch.long), 0)
    return torch.ops.quantized.linear_prepack(qweight, None if bias is None else bias.float().contiguous())


def _product(parts: list[object]) -> Product:
    """x [B, in] -> [B, out]: the parts' outputs side by side (each part is a block of output rows)."""
    linear: Callable[[torch.Tensor, object], torch.Tensor] = torch.ops.quantized.linear_dynamic

    def product(x: torch.Tensor) -> torch.Tensor:
        x = x.float().contiguous()
        if len(parts) == 1:
            return linear(x, parts[0])
        return torch.cat([linear(x, part) for part in parts], 1)

    return product
