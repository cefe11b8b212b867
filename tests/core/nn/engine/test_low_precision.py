"""Fast mode's low-precision copies (nn/engine/low_precision.py): int8 products packed in parts, bf16 copies."""
from __future__ import annotations

import warnings

import pytest
import torch

from hyperstyle_core.nn.engine import low_precision
from hyperstyle_core.nn.hypernetwork import RefinementBlock
from hyperstyle_core.testing import make_tiny_models


def test_int8_products_are_close_cached_and_rebuilt_after_weight_changes():
    hs, _ = make_tiny_models(seed=3, size=256)                 # 256 px: layers 14+ have 1x1 output layers
    hypernet = hs.hypernet
    products = low_precision.int8_products(hypernet)
    assert low_precision.int8_products(hypernet) is products              # cast once
    shared = hypernet.shared_weight_hypernet
    z = torch.randn(5, shared.z_dim)
    exact = torch.addmm(shared.b2, z, shared.w2)
    approx = products.shared()(z)
    assert approx.shape == exact.shape
    assert (approx - exact).norm() / exact.norm() < 0.1           # int8: 2 % at K=512, ~7 % at this K=16
    name = next(n for n, b in zip(hypernet.layer_names, hypernet.refinement_blocks) if isinstance(b, RefinementBlock))
    assert products.output(name) is not None and products.output("conv1") is None
    with torch.no_grad():
        shared.w2.mul_(2)
    rebuilt = low_precision.int8_products(hypernet)
    assert rebuilt is not products
    assert torch.allclose(rebuilt.shared()(z), 2 * approx - shared.b2, rtol=0.05, atol=0.05 * exact.abs().max().item())


def _whole_matrix_int8(weight: torch.Tensor, bias: torch.Tensor | None):
    """The plain recipe: quantize_per_channel of the whole float32 matrix, one packed matrix."""
    weight = weight.float().contiguous()
    scales = weight.abs().amax(dim=1).clamp_min(1e-12).div_(127.0).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                  # the quantized constructors' deprecation note
        qweight = torch.quantize_per_channel(weight, scales, torch.zeros(weight.shape[0], dtype=torch.long), 0,
                                             torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qweight, bias)
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_packing_in_parts_and_chunks_equals_one_packed_matrix(transposed, with_bias):
    # Parts of 40 rows, quantised 16 rows at a time, on two threads: the products must be the very numbers of one
    # packed matrix quantised whole (w2 is packed as a transposed view, the output layers as plain matrices).
    torch.manual_seed(0)
    weight = 0.05 * torch.randn(512, 100) if transposed else 0.05 * torch.randn(100, 512)
    weight = weight.t() if transposed else weight                     # [100 rows, 512]; strides (1, 100) if transposed
    weight[7] = 0                                                     # an all-zero row (scale clamped, output = bias)
    bias = torch.randn(100) if with_bias else None
    products = low_precision.pack_linears({"m": (weight, bias)}, part_bytes=40 * 512 * 4, chunk_bytes=16 * 512 * 4,
                                          workers=2)
    x = torch.randn(9, 512)
    got = products["m"](x)
    assert got.shape == (9, 100)
    assert torch.equal(got, _whole_matrix_int8(weight, bias)(x))
    exact = x @ weight.t() + (0 if bias is None else bias)
    assert (got - exact).norm() / exact.norm() < 0.05                 # int8 weights and activations: ~2 %
    assert torch.equal(got[:, 7], torch.zeros(9) if bias is None else bias[7].expand(9))


def test_int8_packing_keeps_matrices_apart_and_packs_each_part_once(monkeypatch):
    torch.manual_seed(1)
    a, b = 0.05 * torch.randn(30, 64), 0.05 * torch.randn(5, 64)
    packed_rows = []
    original = low_precision._pack_rows
    monkeypatch.setattr(low_precision, "_pack_rows", lambda w, bias, chunk: packed_rows.append(w.shape[0]) or
                        original(w, bias, chunk))
    products = low_precision.pack_linears({"a": (a, None), "b": (b, None)}, part_bytes=8 * 64 * 4, workers=2)
    assert sorted(packed_rows) == [5, 6, 8, 8, 8]                    # a in parts of 8 rows (8, 8, 8, 6), b whole
    x = torch.randn(3, 64)
    assert torch.equal(products["a"](x), _whole_matrix_int8(a, None)(x))
    assert torch.equal(products["b"](x), _whole_matrix_int8(b, None)(x))


def test_bf16_copies_do_not_inherit_the_originals_hooks():
    """A hook on the model (a profiler's, the benchmark's timers) must not fire on fast mode's copy with the
    original's state: the copy starts without hooks; hooks on the copy itself work."""
    hs, _ = make_tiny_models(seed=3, size=64, divisor=32)
    calls = []
    handle = hs.generator.register_forward_hook(lambda *a: calls.append("original"))
    copy = low_precision.bf16_copy(hs.generator)
    handle.remove()
    copy.register_forward_hook(lambda *a: calls.append("copy"))
    with torch.no_grad():
        copy(torch.zeros(1, hs.generator.config.style_dim, dtype=torch.bfloat16))
    assert calls == ["copy"]
