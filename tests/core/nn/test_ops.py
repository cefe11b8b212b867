"""nn.ops: FIR filtering against a direct definition, the grouped modulated conv against the per-sample loop."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from hyperstyle_core.nn import ops


def _upfirdn_direct(x, kernel, up, down, pad):
    """Textbook definition: zero-insert, pad, correlate with the flipped kernel (a true convolution), decimate."""
    b, c, h, w = x.shape
    up_img = torch.zeros(b, c, h * up, w * up, dtype=x.dtype)
    up_img[:, :, ::up, ::up] = x
    p0, p1 = pad
    padded = F.pad(up_img, [p0, p1, p0, p1])
    kh, kw = kernel.shape
    out_h, out_w = padded.shape[2] - kh + 1, padded.shape[3] - kw + 1
    out = torch.zeros(b, c, out_h, out_w, dtype=x.dtype)
    flipped = torch.flip(kernel, [0, 1])
    for i in range(kh):
        for j in range(kw):
            out += flipped[i, j] * padded[:, :, i:i + out_h, j:j + out_w]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 1)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2))])
def test_upfirdn2d_matches_definition(up, down, pad):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    kernel = torch.rand(4, 4, dtype=torch.float64)  # asymmetric, so a missing flip is caught
    got = ops.upfirdn2d(x, kernel, up=up, down=down, pad=pad)
    want = _upfirdn_direct(x, kernel, up, down, pad)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-12)


def test_blur_kernel_is_normalised_with_gain():
    k = ops.make_blur_kernel([1, 3, 3, 1], gain=4.0)
    assert k.shape == (4, 4)
    assert k.sum().item() == pytest.approx(4.0)
    assert k[0, 0].item() == pytest.approx(4.0 / 64)


def test_upsample2x_preserves_constant_images():
    x = torch.full((1, 2, 5, 5), 0.7)
    y = ops.upsample2x(x, ops.make_blur_kernel([1, 3, 3, 1], gain=4.0))
    assert y.shape == (1, 2, 10, 10)
    assert torch.allclose(y[:, :, 2:-2, 2:-2], torch.full_like(y[:, :, 2:-2, 2:-2], 0.7), atol=1e-6)


def test_modulated_weight_applies_delta_before_demodulation():
    torch.manual_seed(1)
    weight = torch.randn(4, 3, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 3, dtype=torch.float64)
    delta = torch.randn(2, 4, 3, 3, 3, dtype=torch.float64) * 0.1
    w = ops.modulated_weight(weight, styles, 0.5, delta, demodulate=True)
    manual = 0.5 * weight[None] * (1 + delta) * styles[:, None, :, None, None]
    manual = manual / manual.pow(2).sum([2, 3, 4], keepdim=True).add(1e-8).sqrt()
    assert torch.allclose(w, manual, atol=1e-12)
    # Demodulated filters have unit norm whatever the delta.
    assert torch.allclose(w.pow(2).sum([2, 3, 4]), torch.ones(2, 4, dtype=torch.float64), atol=1e-6)


GRID = list(itertools.product([False, True], ["none", "zero", "random"], [1, 3], [3, 1]))


@pytest.mark.parametrize("upsample,delta_kind,batch,k", [g for g in GRID if not (g[0] and g[3] == 1)])
def test_grouped_modulated_conv_matches_reference(upsample, delta_kind, batch, k):
    torch.manual_seed(2)
    cin, cout = 6, 5
    x = torch.randn(batch, cin, 8, 8)
    weight = torch.randn(cout, cin, k, k)
    styles = torch.randn(batch, cin) + 1
    delta = {"none": None, "zero": torch.zeros(batch, cout, cin, k, k),
             "random": 0.1 * torch.randn(batch, cout, cin, k, k)}[delta_kind]
    blur = ops.make_blur_kernel([1, 3, 3, 1], 4.0) if upsample else None
    kwargs = dict(scale=1 / (cin * k * k) ** 0.5, delta=delta, demodulate=k == 3, upsample=upsample, blur_kernel=blur)
    ref = ops.modulated_conv2d(x, weight, styles, impl="ref", **kwargs)
    fast = ops.modulated_conv2d(x, weight, styles, impl="grouped", **kwargs)
    assert ref.shape == (batch, cout, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(ref, fast, atol=1e-5)
    if delta_kind == "zero":
        plain = ops.modulated_conv2d(x, weight, styles, impl="ref", **{**kwargs, "delta": None})
        assert torch.allclose(ref, plain, atol=1e-6)
    if delta_kind == "random":
        plain = ops.modulated_conv2d(x, weight, styles, impl="ref", **{**kwargs, "delta": None})
        assert not torch.allclose(ref, plain, atol=1e-3)


def test_reference_conv_treats_each_sample_independently():
    """Sample i of a batched call equals a batch-1 call on sample i (no leakage across the batch)."""
    torch.manual_seed(3)
    x = torch.randn(3, 4, 6, 6)
    weight = torch.randn(4, 4, 3, 3)
    styles = torch.randn(3, 4)
    delta = 0.1 * torch.randn(3, 4, 4, 3, 3)
    full = ops.modulated_conv2d(x, weight, styles, scale=1 / 6, delta=delta)
    for i in range(3):
        one = ops.modulated_conv2d(x[i:i + 1], weight, styles[i:i + 1], scale=1 / 6, delta=delta[i:i + 1])
        assert torch.allclose(full[i:i + 1], one, atol=1e-5)


def test_unknown_impl_is_rejected():
    with pytest.raises(ValueError, match="impl must be"):
        ops.modulated_conv2d(torch.zeros(1, 2, 4, 4), torch.zeros(2, 2, 3, 3), torch.ones(1, 2), scale=1.0,
                             impl="fast")


def test_assert_shape_names_the_tensor():
    with pytest.raises(ValueError, match=r"latent has shape \[2, 3\], expected \[\*, 512\]"):
        ops.assert_shape(torch.zeros(2, 3), [None, 512], "latent")
