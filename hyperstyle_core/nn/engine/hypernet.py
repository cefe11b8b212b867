"""The hypernetwork's inference pass: `HyperNetwork.forward`'s offsets, with its big products in the plan's forms.

Two products dominate a pass, and both stream large weights for a few rows of input, so on CPU their cost is how
fast a form streams memory, not arithmetic:
- the shared hypernet's first product z [9B, 512] @ w2 [512, 512*512] (w2: 512 MiB), formed as the plan says
  (`first_product`); its second product is computed per layer, each layer's kernels a tensor of its own (9 MiB at
  batch 1: reused from the heap, where one [9*512, 4608] result would be mapped and page-faulted in afresh);
- the 1x1 output layers (up to 256 MiB each), for one sample a matrix-vector product, which MKL runs on one core:
  split into row groups, one per thread (`matrix_vector_in_groups`).
Fast mode may replace both by int8 copies (nn/engine/low_precision.py). Every form gives the reference's values up
to float rounding (another summation order).
"""
from __future__ import annotations

import torch
from torch import nn

from ...devices import ieee_float32
from ..hypernetwork import (HyperNetwork, HyperRefinementBlock, RefinementBlock, SharedWeightsHypernet,
                            one_by_one_output)
from ..ops import assert_shape
from .low_precision import Int8Products, Product
from .plan import FIRST_PRODUCT_FORMS, ROW_BLOCK, InferencePlan


def predict_deltas(hypernet: HyperNetwork, x: torch.Tensor, plan: InferencePlan,
                   products: Int8Products | None = None) -> dict[str, torch.Tensor]:
    """`hypernet(x)` without autograd.

    Args:
        hypernet: the network to run (inputs must be on its device, in its dtype).
        x: [B, input_nc, H, W], the (image, reconstruction) pair.
        plan: the engine's choices for the device.
        products: fast mode's int8 copies of the big matrices, or None (exact).
    Returns:
        {layer name: offsets [B, out, in, k, k]} in generator layer order.
    """
    assert_shape(x, [None, hypernet.config.input_nc, None, None], "hypernetwork input")
    with torch.no_grad(), ieee_float32(x.device):
        feats = hypernet.features(x)
        out: dict[str, torch.Tensor] = {}
        shared_names, shared_codes = [], []
        for name, block in hypernet.tuned_blocks():
            if isinstance(block, HyperRefinementBlock):
                shared_names.append(name)
                shared_codes.append(block(feats))
            elif isinstance(block, RefinementBlock):
                product = None if products is None else products.output(name)
                out[name] = block.offsets(output_layer(block.pooled(feats), block.output_layer, plan, product))
            else:
                out[name] = block(feats)
        if shared_codes:
            product = None if products is None else products.shared()
            kernels = shared_kernels(hypernet.shared_weight_hypernet, torch.cat(shared_codes, 0), len(shared_names),
                                     plan, product)
            out.update(zip(shared_names, kernels))
        return {name: out[name] for name in hypernet.layer_names if name in out}


def output_layer(pooled: torch.Tensor, conv: nn.Conv2d, plan: InferencePlan,
                 product: Product | None = None) -> torch.Tensor:
    """A refinement block's 1x1 output layer on pooled features [B, C, 1, 1] -> [B, out] (`one_by_one_output`)."""
    if pooled.shape[2:] != (1, 1):
        return conv(pooled)
    flat = pooled.reshape(pooled.shape[0], pooled.shape[1])
    if product is not None:
        return product(flat)
    weight = conv.weight.view(conv.weight.shape[0], conv.weight.shape[1])
    groups = plan.output_groups(weight.shape[0], flat.shape[0])
    if groups > 1:
        return matrix_vector_in_groups(weight, flat, conv.bias, groups)
    return one_by_one_output(pooled, conv)


def matrix_vector_in_groups(weight: torch.Tensor, flat: torch.Tensor, bias: torch.Tensor | None,
                            groups: int) -> torch.Tensor:
    """weight [N, K] @ flat [1, K]^T (+ bias [N]) -> [1, N], as one batched product of `groups` row groups."""
    rows, k = weight.shape[0] // groups, weight.shape[1]
    stacked = weight.view(groups, rows, k)
    vector = flat.t().expand(groups, k, 1)
    if bias is None:
        return torch.bmm(stacked, vector).view(1, -1)
    return torch.baddbmm(bias.view(groups, rows, 1), stacked, vector).view(1, -1)


def shared_kernels(shared: SharedWeightsHypernet, z: torch.Tensor, n_groups: int, plan: InferencePlan,
                   product: Product | None = None) -> list[torch.Tensor]:
    """`shared(z)` for z [n_groups * B, z_dim] made of equal groups of codes (one group per layer): each group's
    kernels [B, out, in, 3, 3] a tensor of its own; the same rows of the same products."""
    if product is not None:
        h = product(z)
    else:
        h = first_product(z, shared.w2, shared.b2, plan.first_product_form(z.shape[0]))
    h_in = h.view(z.shape[0] * shared.in_size, shared.z_dim)
    batch = z.shape[0] // n_groups
    rows = batch * shared.in_size
    return [torch.addmm(shared.b1, h_in[i * rows:(i + 1) * rows], shared.w1)
            .view(batch, shared.out_size, shared.in_size, shared.f_size, shared.f_size) for i in range(n_groups)]


def first_product(z: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, form: str) -> torch.Tensor:
    """z [n, K] @ w2 [K, N] + b2 [N] -> [n, N] in one of FIRST_PRODUCT_FORMS.

    addmm: one product (the reference; it fuses the bias add). tall_skinny: (w2^T z^T)^T, the MKL kernel that streams
    w2 fastest with AVX-512. row_blocks: addmm over blocks of ROW_BLOCK rows of w2 accumulated into the result, which
    streams w2 fastest for a few rows of z on other CPUs.
    """
    if form == "tall_skinny":
        return torch.mm(w2.t(), z.t()).t().contiguous().add_(b2)
    if form == "row_blocks":
        out = b2.expand(z.shape[0], -1).clone()
        for k in range(0, w2.shape[0], ROW_BLOCK):
            out.addmm_(z[:, k:k + ROW_BLOCK], w2[k:k + ROW_BLOCK])
        return out
    if form != "addmm":
        raise ValueError(f"form must be one of {', '.join(FIRST_PRODUCT_FORMS)}, got {form!r}")
    return torch.addmm(b2, z, w2)
