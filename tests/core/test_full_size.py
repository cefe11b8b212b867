"""Full-size configurations through the public API: FFHQ 1024 and the cars 512 crop (recipe weights)."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core import InversionResult, WeightDeltas, generate, invert, load

pytestmark = pytest.mark.slow      # FFHQ 1024 and cars 512 models: minutes


def _photo_like(batch: int, h: int, w: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    return torch.rand(batch, 3, h, w, generator=g) * 2 - 1


def test_ffhq_1024_inversion_runs_on_cpu(converted):
    hs = load(converted("hyperstyle_ffhq_1024"), device="cpu", expect="hyperstyle")
    we = load(converted("faces_w_encoder_1024"), device="cpu", expect="w_encoder")
    steps = []
    result = invert(_photo_like(1, 256, 256), hs, we, n_iters=2, on_iteration=lambda i, im, d: steps.append(i))
    assert isinstance(result, InversionResult) and steps == [1, 2]
    assert result.latent.shape == (1, 18, 512)
    assert result.initial.shape == (1, 3, 1024, 1024)
    assert [im.shape for im in result.images] == [(1, 3, 1024, 1024)] * 2
    assert isinstance(result.deltas, WeightDeltas)
    assert result.deltas.layer_indices == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24]
    assert result.deltas["convs.15"].shape == (1, 32, 32, 3, 3)
    assert all(torch.isfinite(im).all() for im in result.images)
    # Refinement changes the image, and re-rendering the final deltas reproduces it.
    assert (result.images[-1] - result.initial).abs().mean() > 1e-3
    assert torch.allclose(generate(hs.generator, result.latent, result.deltas), result.images[-1], atol=1e-4)


def test_cars_512_inversion_uses_the_official_crop(converted):
    hs = load(converted("hyperstyle_cars_512"), device="cpu", expect="hyperstyle")
    we = load(converted("cars_w_encoder_512"), device="cpu", expect="w_encoder")
    assert hs.input_spec.is_cars and we.input_spec.is_cars
    result = invert(_photo_like(2, 192, 256), hs, we, n_iters=1)
    assert result.latent.shape == (2, 16, 512)
    assert result.initial.shape == (2, 3, 384, 512)
    assert result.images[0].shape == (2, 3, 384, 512)
    # The crop is rows 64:448 of the full 512x512 render.
    full = hs.generator(result.latent, dict(result.deltas))
    assert torch.allclose(full[:, :, 64:448], result.images[0], atol=1e-5)


def test_wrong_input_size_is_explained(converted):
    import pytest
    hs = load(converted("hyperstyle_cars_512"), device="cpu", expect="hyperstyle")
    we = load(converted("cars_w_encoder_512"), device="cpu", expect="w_encoder")
    with pytest.raises(ValueError, match=r"expects 192x256 inputs \(HxW\), got 256x256"):
        invert(_photo_like(1, 256, 256), hs, we, n_iters=1)
    with pytest.raises(ValueError, match=r"expects images \[B, 3, 192, 256\].*got shape \[1, 4, 192, 256\]"):
        invert(torch.zeros(1, 4, 192, 256), hs, we, n_iters=1)
    with pytest.raises(ValueError, match="n_iters must be a positive integer"):
        invert(_photo_like(1, 192, 256), hs, we, n_iters=0)


def test_mismatched_w_encoder_is_explained(converted, models_256):
    import pytest
    hs, _ = models_256
    we_1024 = load(converted("faces_w_encoder_1024"), device="cpu")
    with pytest.raises(ValueError, match="W-encoder gives 18 styles but the HyperStyle model's latent_avg has 14"):
        invert(_photo_like(1, 256, 256), hs, we_1024, n_iters=1)
    with pytest.raises(ValueError, match="needs a W-encoder model"):
        invert(_photo_like(1, 256, 256), hs, hs, n_iters=1)
