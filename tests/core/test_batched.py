"""The batched recipes (hyperstyle_core.batched): any batch size gives what the unbatched call gives, on the CPU,
with one progress call per batch (per iteration of a batch for refinement), and clear errors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hyperstyle_core import (GeneratorConfig, ReStyleE4EModel, encode_in_batches, generate, refine,
                             refine_in_batches, restyle_e4e_invert, restyle_in_batches, w_encode)
from hyperstyle_core.nn.networks import InputSpec
from hyperstyle_core.testing import make_tiny_models

N_IMAGES = 3
ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny():
    hs, we = make_tiny_models(seed=2)
    images = torch.rand(N_IMAGES, 3, 256, 256, generator=torch.Generator().manual_seed(4)) * 2 - 1
    return hs, we, images


class _PooledEncoder(torch.nn.Module):
    """Stands in for ReStyle's full-width IR-SE50 (the batching is under test here, not the encoder, which
    test_restyle_domain compares with the official outputs): [B, 6, 256, 256] -> [B, n_latent, 512] per sample."""

    def __init__(self, n_latent: int):
        super().__init__()
        self.n_latent = n_latent
        self.linear = torch.nn.Linear(6 * 8 * 8, n_latent * 512)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.1 * self.linear(F.adaptive_avg_pool2d(x, 8).flatten(1)).view(-1, self.n_latent, 512)


@pytest.fixture(scope="module")
def tiny_restyle():
    """A ReStyle-e4e model with random weights, a small generator (the encoder's W+ width is fixed at 512) and a
    small encoder."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        model = ReStyleE4EModel(GeneratorConfig(64, style_dim=512, n_mlp=2, channel_divisor=16), InputSpec())
        model.encoder = _PooledEncoder(model.generator.n_latent)
    return model.eval().requires_grad_(False)


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.allclose(a.float().cpu(), b.float().cpu(), atol=ATOL)


def test_encode_in_batches_equals_one_call(tiny):
    hs, we, images = tiny
    with torch.no_grad():
        whole = w_encode(we, images, hs.latent_avg)
    renders = generate(hs.generator, whole)
    for batch_size in (1, 2, 3):
        calls = []
        encoded = encode_in_batches(images, hs, we, batch_size, on_batch=calls.append)
        assert calls == {1: [1, 1, 1], 2: [2, 1], 3: [3]}[batch_size]
        assert encoded.latent.device.type == "cpu" and encoded.images.dtype == torch.float32
        assert _close(encoded.latent, whole) and _close(encoded.images, renders)


def test_refine_in_batches_equals_one_call(tiny):
    hs, we, images = tiny
    latent = encode_in_batches(images, hs, we).latent
    first = {}
    whole = refine(images, hs, latent, n_iters=2, on_iteration=lambda i, image, d: first.setdefault("deltas", d))
    for batch_size in (1, 2, 3):        # one iteration: compared with the whole batch's first
        steps = []
        refined = refine_in_batches(images, hs, latent, 1, batch_size, on_step=steps.append)
        assert steps == {1: [1, 1, 1], 2: [2, 1], 3: [3]}[batch_size]
        assert refined.deltas.batch_size == N_IMAGES and set(refined.deltas) == set(first["deltas"])
        assert all(t.device.type == "cpu" and _close(t, first["deltas"][n]) for n, t in refined.deltas.items())
        assert refined.images.dtype == torch.float32 and _close(refined.images, whole.images[0])
    steps = []
    every = refine_in_batches(images, hs, latent, 2, batch_size=2, all_iterations=True, on_step=steps.append)
    assert steps == [2, 2, 1, 1]        # one call per iteration of each batch, with that batch's image count
    assert all(_close(t, whole.deltas[n]) for n, t in every.deltas.items())
    assert every.images.shape == (N_IMAGES, 2, *whole.final.shape[1:])     # per image, its iterations in order
    assert _close(every.images[:, 0], whole.images[0]) and _close(every.images[:, 1], whole.final)


def test_refine_in_batches_passes_fast_mode_on(tiny):
    hs, we, images = tiny
    latent = encode_in_batches(images, hs, we).latent
    whole = refine(images, hs, latent, n_iters=1, fast=True)
    refined = refine_in_batches(images, hs, latent, 1, batch_size=3, fast=True)
    assert all(_close(t, whole.deltas[n]) for n, t in refined.deltas.items())
    with pytest.raises(ValueError, match="fast must be True or False"):
        refine_in_batches(images, hs, latent, 1, fast="yes")


def test_restyle_in_batches_equals_one_call(tiny, tiny_restyle):
    _, _, images = tiny
    whole = restyle_e4e_invert(images, tiny_restyle, n_iters=2)
    assert torch.isfinite(whole.latent).all()
    for batch_size in (1, 2, 3):
        calls = []
        restyled = restyle_in_batches(images, tiny_restyle, 2, batch_size, on_batch=calls.append)
        assert calls == {1: [1, 1, 1], 2: [2, 1], 3: [3]}[batch_size]
        assert _close(restyled.latent, whole.latent) and _close(restyled.images, whole.images[-1])


def test_errors_and_stopping(tiny, tiny_restyle):
    hs, we, images = tiny
    latent = torch.zeros(N_IMAGES, hs.generator.n_latent, hs.generator.config.style_dim)
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="batch_size must be at least 1"):
            encode_in_batches(images, hs, we, batch_size=bad)
    with pytest.raises(ValueError, match="encode_in_batches: the batch is empty"):
        encode_in_batches(images[:0], hs, we)
    with pytest.raises(ValueError, match="needs a HyperStyle model as `hyperstyle`, got WEncoderModel"):
        encode_in_batches(images, we, we)
    with pytest.raises(ValueError, match="needs a W-encoder model as `w_encoder`, got HyperStyleModel"):
        encode_in_batches(images, hs, hs)
    with pytest.raises(ValueError, match="refine_in_batches got 3 images but 2 latents; pass one latent per image"):
        refine_in_batches(images, hs, latent[:2])
    with pytest.raises(ValueError, match="needs a ReStyle-e4e model as `restyle`, got HyperStyleModel"):
        restyle_in_batches(images, hs)
    with pytest.raises(ValueError, match="HyperStyle expects 256x256 inputs"):
        refine_in_batches(images[:, :, :128], hs, latent)

    class Stop(Exception):
        pass

    calls = []

    def stop(n: int) -> None:
        calls.append(n)
        raise Stop

    with pytest.raises(Stop):       # raising in the callback stops the work after the first batch
        refine_in_batches(images, hs, latent, 2, batch_size=1, on_step=stop)
    with pytest.raises(Stop):
        encode_in_batches(images, hs, we, batch_size=1, on_batch=stop)
    assert calls == [1, 1]
