"""nn/engine/fast_ops.py against nn.ops: in-place modulated weights, convs with the bias in their pass, the
separable 2x up-sampling of the RGB skips."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core.nn import ops
from hyperstyle_core.nn.engine import fast_ops


@pytest.mark.parametrize("delta_kind", ["none", "batch", "one", "broadcast"])
@pytest.mark.parametrize("demodulate", [True, False])
def test_inplace_modulated_weight_is_bit_identical_to_the_reference(delta_kind, demodulate):
    torch.manual_seed(0)
    weight, styles = torch.randn(5, 4, 3, 3), torch.randn(3, 4) + 1
    delta = {"none": None, "batch": 0.1 * torch.randn(3, 5, 4, 3, 3), "one": 0.1 * torch.randn(1, 5, 4, 3, 3),
             "broadcast": 0.1 * torch.randn(5, 4, 3, 3)}[delta_kind]
    kept = None if delta is None else delta.clone()
    reference = ops.modulated_weight(weight, styles, 0.3, delta, demodulate)
    inplace = fast_ops.modulated_weight_inplace(weight, styles, 0.3, delta, demodulate)
    assert inplace.shape == reference.shape == (3, 5, 4, 3, 3)
    assert torch.equal(inplace, reference)
    if delta is not None:
        assert torch.equal(delta, kept)                                             # inputs are never written


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weight_gain_scales_the_weights(demodulate):
    torch.manual_seed(6)
    weight, styles, delta = torch.randn(5, 4, 3, 3), torch.randn(2, 4) + 1, 0.1 * torch.randn(2, 5, 4, 3, 3)
    plain = ops.modulated_weight(weight, styles, 0.3, delta, demodulate)
    scaled = fast_ops.modulated_weight_inplace(weight, styles, 0.3, delta, demodulate, gain=ops.SQRT2)
    assert torch.allclose(scaled, plain * ops.SQRT2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("batch", [1, 3])
def test_packed_conv_with_bias_matches_the_reference(upsample, memory_format, batch):
    """conv_packed(bias=...) on packed features equals ops' per-sample loop plus the bias, in the input's layout."""
    torch.manual_seed(4)
    cin, cout = 4, 5
    x = torch.randn(batch, cin, 8, 8)
    weight, styles = torch.randn(cout, cin, 3, 3), torch.randn(batch, cin) + 1
    bias = torch.randn(batch * cout)
    blur = ops.make_blur_kernel([1, 3, 3, 1], 4.0) if upsample else None
    want = ops.modulated_conv2d(x, weight, styles, scale=0.2, upsample=upsample, blur_kernel=blur, impl="ref")
    want = want + bias.view(batch, cout, 1, 1)
    w = ops.modulated_weight(weight, styles, 0.2, None, True)
    packed = x.reshape(1, batch * cin, 8, 8).contiguous(memory_format=memory_format)
    got = fast_ops.conv_packed(packed, w, upsample, blur, bias)
    side = 16 if upsample else 8
    assert got.shape == (1, batch * cout, side, side) and got.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(got.reshape(batch, cout, side, side), want, rtol=1e-5, atol=1e-5)
    assert (got.reshape(batch, cout, side, side) - (want - bias.view(batch, cout, 1, 1))).abs().max() > 0.1


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 1], [1, 4, 6, 4, 1], [1, 2, 3, 4, 5, 6]])
@pytest.mark.parametrize("size", [(7, 7), (8, 5)])
def test_separable_upsample_matches_upfirdn(taps, size):
    """The RGB skips' 2x up-sampling as two 1-D polyphase passes equals upfirdn2d's for symmetric and lopsided FIR
    filters, odd and even sizes, in either memory format."""
    torch.manual_seed(5)
    kernel = ops.make_blur_kernel(taps, 4.0)
    assert fast_ops.separable_taps(kernel) is not None
    for x in (torch.randn(2, 3, *size), torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)):
        want = ops.upsample2x(x, kernel)
        got = fast_ops.upsample2x_separable(x, kernel)
        assert got.shape == want.shape == (2, 3, 2 * size[0], 2 * size[1])
        assert torch.allclose(got, want, atol=1e-6)


def test_separable_upsample_takes_upfirdn_for_a_kernel_that_is_not_an_outer_product(monkeypatch):
    """A checkpoint's up-sampling kernel buffer could be any 2-D filter: only outer products are split."""
    torch.manual_seed(6)
    kernel = ops.make_blur_kernel([1, 3, 3, 1], 4.0)
    kernel[0, 1] += 0.05
    assert fast_ops.separable_taps(kernel) is None
    assert fast_ops.separable_taps(torch.zeros(4, 4)) is None
    x = torch.randn(1, 3, 6, 5)
    assert torch.allclose(fast_ops.upsample2x_separable(x, kernel), ops.upsample2x(x, kernel), atol=1e-6)
    monkeypatch.setattr(fast_ops, "_upsample2x_along", lambda *a: pytest.fail("the separable passes ran"))
    fast_ops.upsample2x_separable(x, kernel)


@pytest.mark.parametrize("pad", [(1, 1), (2, 1), (-1, 2)])
def test_fir_filter_with_bias_equals_blur_plus_bias(pad):
    torch.manual_seed(7)
    x = torch.randn(2, 3, 9, 9).contiguous(memory_format=torch.channels_last)
    kernel, bias = ops.make_blur_kernel([1, 3, 3, 1]), torch.randn(3)
    got = fast_ops.fir_filter(x, kernel, pad, bias)
    torch.testing.assert_close(got, ops.blur(x, kernel, pad) + bias.view(1, 3, 1, 1), rtol=1e-6, atol=1e-6)
