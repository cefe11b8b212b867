"""Generator blocks in strips (nn/strips.py): the same images as whole-image blocks, only where they pay."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core.nn import strips
from hyperstyle_core.testing import tiny_generator


@pytest.fixture
def small_strips(monkeypatch):
    """Strips for every block of a tiny generator at batch 1, 10 rows each; records the inputs of the strip runs."""
    monkeypatch.setattr(strips, "MIN_MAP_BYTES", 0)
    monkeypatch.setattr(strips, "strip_rows", lambda width, channels, itemsize: 10)
    calls = []
    original = strips.block_in_strips
    monkeypatch.setattr(strips, "block_in_strips", lambda *a, **k: calls.append(a[3].shape) or original(*a, **k))
    return calls


def _whole(monkeypatch, render):
    with monkeypatch.context() as m:
        m.setattr(strips, "MIN_MAP_BYTES", 2 ** 62)
        return render()


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("randomize_noise", [False, True])
def test_strips_render_the_whole_image_blocks(monkeypatch, small_strips, batch, randomize_noise):
    """Batch 1 runs every block in strips (10 rows: strips end on odd input rows too) and draws what whole blocks
    draw; a packed batch of 3 (this 128-px model has no per-sample blocks) keeps whole blocks."""
    generator = tiny_generator(size=128, divisor=8)
    for conv in generator.convs:                      # non-zero noise weights and biases, so both count
        conv.noise.weight.data.fill_(0.3)
        conv.activate.bias.data.normal_(generator=torch.Generator().manual_seed(1))
    latent = torch.randn(batch, generator.config.style_dim, generator=torch.Generator().manual_seed(2))
    rng = torch.Generator().manual_seed(3)
    deltas = {name: 0.1 * torch.randn(batch, *generator.convs[i].conv.weight.shape[1:], generator=rng)
              for i, name in ((8, "convs.8"), (9, "convs.9"))}

    def render():
        torch.manual_seed(4)                          # the same fresh noise in both renders
        with torch.no_grad():
            return generator(latent, deltas, randomize_noise=randomize_noise)

    in_strips = render()
    n_blocks = len(generator.to_rgbs) if batch == 1 else 0
    assert len(small_strips) == n_blocks
    whole = _whole(monkeypatch, render)
    assert len(small_strips) == n_blocks              # none with the threshold out of reach
    assert in_strips.shape == whole.shape == (batch, 3, 128, 128)
    assert torch.allclose(in_strips, whole, rtol=1e-6, atol=1e-5)     # float rounding (halo mistakes are O(1))
    with torch.no_grad():
        torch.manual_seed(4)
        ref = generator(latent, deltas, randomize_noise=randomize_noise, impl="ref")
    assert torch.allclose(in_strips, ref, atol=1e-4)


def test_strips_run_only_in_cpu_inference_of_large_blocks():
    x = torch.zeros(1, 64, 512, 512)
    with torch.no_grad():
        assert strips.strips_pay(x, 1, 32, "auto")                          # 1024-px output, 134 MB maps
        assert strips.strips_pay(torch.zeros(1, 256, 128, 128), 1, 128, "auto")     # 256 px, 33.5 MB
        assert not strips.strips_pay(torch.zeros(1, 512, 64, 64), 1, 256, "auto")   # 128 px, 16.8 MB
        assert not strips.strips_pay(torch.zeros(1, 128, 512, 512), 2, 32, "auto")  # packed batches: whole blocks
        assert not strips.strips_pay(x, 1, 32, "ref")
        assert not strips.strips_pay(x, 1, 32, "grouped")
        assert not strips.strips_pay(x.to("meta"), 1, 32, "auto")                  # not CPU
    assert not strips.strips_pay(x, 1, 32, "auto")                                  # gradients on: training


def test_last_block_skips_its_features(monkeypatch, small_strips):
    generator = tiny_generator(size=64, divisor=16)
    latent = torch.randn(1, generator.config.style_dim, generator=torch.Generator().manual_seed(5))
    results = []
    original = strips.block_in_strips
    monkeypatch.setattr(strips, "block_in_strips", lambda *a, **k: results.append(original(*a, **k)) or results[-1])
    with torch.no_grad():
        generator(latent)
    assert [features is None for features, _ in results] == [False] * (len(results) - 1) + [True]
    assert results[-1][1].shape == (1, 3, 64, 64)


def test_strip_rows_hold_about_strip_bytes():
    assert strips.strip_rows(1024, 32, 4) == 128                  # 128 rows x 1024 x 32 channels x 4 B = 16 MiB
    assert strips.strip_rows(512, 64, 4) == 128
    assert strips.strip_rows(8192, 512, 4) == 8                   # never fewer than 8 rows
    assert strips.strip_rows(1000, 30, 4) % 2 == 0
