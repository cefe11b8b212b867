"""The hypernetwork's inference pass (nn/engine/hypernet.py) against the reference `HyperNetwork.forward`: output
layers in row groups, the shared hypernet's first product forms, per-layer kernels."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hyperstyle_core.nn.engine import hypernet as engine_hypernet, plan_inference, predict_deltas
from hyperstyle_core.nn.engine.hypernet import first_product, matrix_vector_in_groups, output_layer, shared_kernels
from hyperstyle_core.nn.hypernetwork import SharedWeightsHypernet, one_by_one_output
from hyperstyle_core.testing import make_tiny_models

PLAN = plan_inference(torch.device("cpu"), torch.float32)


def _shared_hypernet(seed: int) -> SharedWeightsHypernet:
    torch.manual_seed(seed)
    shared = SharedWeightsHypernet(z_dim=64, in_size=32, out_size=16)
    for p in shared.parameters():
        torch.nn.init.normal_(p, std=0.1)
    return shared


@pytest.mark.parametrize("batch", [1, 4])
def test_one_by_one_output_layer_matches_the_conv_with_gradients(batch):
    """The reference's matrix form of the 1x1 output layer: the conv's values and gradients."""
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(16, 300, kernel_size=1)
    x = torch.randn(batch, 16, 1, 1, requires_grad=True)
    want = conv(x).view(batch, -1)
    got = one_by_one_output(x, conv)
    assert torch.allclose(got, want, atol=1e-6)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(g_got, g_want, atol=1e-5)
    wide = torch.randn(batch, 16, 2, 2)                          # not 1x1: the conv itself
    assert torch.equal(one_by_one_output(wide, conv), conv(wide))


@pytest.mark.parametrize("groups", [1, 2, 3, 4])
@pytest.mark.parametrize("with_bias", [True, False])
def test_matrix_vector_in_row_groups_matches_addmm(groups, with_bias):
    torch.manual_seed(3)
    weight, flat, bias = torch.randn(360, 40), torch.randn(1, 40), torch.randn(360)
    want = torch.addmm(bias.unsqueeze(1), weight, flat.t()).t() if with_bias else torch.mm(weight, flat.t()).t()
    got = matrix_vector_in_groups(weight, flat, bias if with_bias else None, groups)
    assert got.shape == (1, 360)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_output_layer_takes_the_row_groups_the_plan_gives(monkeypatch):
    calls = []
    monkeypatch.setattr(engine_hypernet, "matrix_vector_in_groups",
                        lambda *a: calls.append(a[3]) or matrix_vector_in_groups(*a))
    conv = torch.nn.Conv2d(8, 360, kernel_size=1)
    with torch.no_grad():
        one, two = torch.randn(1, 8, 1, 1), torch.randn(2, 8, 1, 1)
        torch.testing.assert_close(output_layer(one, conv, replace(PLAN, threads=4)), conv(one).view(1, -1),
                                   rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(output_layer(two, conv, replace(PLAN, threads=4)), conv(two).view(2, -1),
                                   rtol=1e-5, atol=1e-6)
        output_layer(one, conv, replace(PLAN, threads=1))
    assert calls == [4]                                          # batch 2 and one thread: one product


@pytest.mark.parametrize("form", ["addmm", "tall_skinny", "row_blocks"])
@pytest.mark.parametrize("rows", [9, 18])
def test_first_product_forms_match_addmm(form, rows):
    """Every form gives the addmm values up to float rounding (another summation order)."""
    shared = _shared_hypernet(0)
    z = torch.randn(rows, 64)
    with torch.no_grad():
        reference = torch.addmm(shared.b2, z, shared.w2)
        got = first_product(z, shared.w2, shared.b2, form)
    assert got.shape == reference.shape
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="form must be one of addmm, tall_skinny, row_blocks"):
        first_product(z, shared.w2, shared.b2, "fastest")


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("form", ["addmm", "tall_skinny", "row_blocks"])
def test_shared_kernels_per_layer_are_the_reference_rows(batch, form):
    """Each shared layer's kernels as a tensor of its own, from the same rows as the reference's single product."""
    shared = _shared_hypernet(7)
    z = torch.randn(3 * batch, 64)
    with torch.no_grad():
        whole = shared(z)
        groups = shared_kernels(shared, z, 3, replace(PLAN, first_product=form))
    assert [g.shape for g in groups] == [(batch, 16, 32, 3, 3)] * 3
    for i, group in enumerate(groups):
        torch.testing.assert_close(group, whole[i * batch:(i + 1) * batch], rtol=1e-5, atol=1e-6)
        assert group.is_contiguous()


@pytest.mark.parametrize("batch", [1, 2])
def test_predicted_deltas_equal_the_reference(monkeypatch, batch):
    """The whole pass on a 256-px model (shared, per-channel and 1x1 refinement blocks) against `hypernet(x)`."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    hs, _ = make_tiny_models(seed=3, size=256)
    x = torch.randn(batch, 6, 256, 256, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        reference = hs.hypernet(x)
    for form in ("addmm", "tall_skinny", "row_blocks"):
        plan = replace(plan_inference(torch.device("cpu"), torch.float32), first_product=form)
        deltas = predict_deltas(hs.hypernet, x, plan)
        assert list(deltas) == list(reference)
        for name in reference:
            torch.testing.assert_close(deltas[name], reference[name], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"hypernetwork input has shape \[1, 3, 256, 256\], expected \[\*, 6"):
        predict_deltas(hs.hypernet, x[:1, :3], PLAN)
