"""Generator blocks in strips (nn/engine/strips.py): the same images as whole-image blocks, only where the plan
says so."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hyperstyle_core.nn.engine import generator as engine_generator, plan_inference, render, strips
from hyperstyle_core.testing import tiny_generator

CPU = torch.device("cpu")
EVERY_BLOCK = replace(plan_inference(CPU, torch.float32), strip_min_bytes=0)     # strips for any block of one sample
NO_BLOCK = replace(EVERY_BLOCK, strip_min_bytes=None)


@pytest.fixture
def strip_inputs(monkeypatch):
    """Strips of 10 rows (strips end on odd input rows too); records the inputs of the blocks run in strips."""
    monkeypatch.setattr(strips, "strip_rows", lambda width, channels, itemsize, strip_bytes: 10)
    calls = []
    original = engine_generator.block_in_strips
    monkeypatch.setattr(engine_generator, "block_in_strips", lambda *a, **k: calls.append(a[3].shape)
                        or original(*a, **k))
    return calls


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("randomize_noise", [False, True])
def test_strips_render_the_whole_image_blocks(strip_inputs, batch, randomize_noise):
    """Batch 1 runs every block in strips and draws what whole blocks draw; a packed batch of 3 (this 128-px model
    has no per-sample blocks) keeps whole blocks."""
    generator = tiny_generator(size=128, divisor=8)
    for conv in generator.convs:                      # non-zero noise weights and biases, so both count
        conv.noise.weight.data.fill_(0.3)
        conv.activate.bias.data.normal_(generator=torch.Generator().manual_seed(1))
    latent = torch.randn(batch, generator.config.style_dim, generator=torch.Generator().manual_seed(2))
    rng = torch.Generator().manual_seed(3)
    deltas = {name: 0.1 * torch.randn(batch, *generator.convs[i].conv.weight.shape[1:], generator=rng)
              for i, name in ((8, "convs.8"), (9, "convs.9"))}

    def draw(plan):
        torch.manual_seed(4)                          # the same fresh noise in every render
        return render(generator, plan, latent, deltas, randomize_noise=randomize_noise)

    in_strips = draw(EVERY_BLOCK)
    n_blocks = len(generator.to_rgbs) if batch == 1 else 0
    assert len(strip_inputs) == n_blocks
    whole = draw(NO_BLOCK)
    assert len(strip_inputs) == n_blocks              # none without the rule
    assert in_strips.shape == whole.shape == (batch, 3, 128, 128)
    assert torch.allclose(in_strips, whole, rtol=1e-6, atol=1e-5)     # float rounding (halo mistakes are O(1))
    with torch.no_grad():
        torch.manual_seed(4)
        ref = generator(latent, deltas, randomize_noise=randomize_noise, impl="ref")
    assert torch.allclose(in_strips, ref, atol=1e-5 * float(ref.abs().max()))


def test_last_block_skips_its_features(monkeypatch, strip_inputs):
    generator = tiny_generator(size=64, divisor=16)
    latent = torch.randn(1, generator.config.style_dim, generator=torch.Generator().manual_seed(5))
    results = []
    original = strips.block_in_strips
    monkeypatch.setattr(engine_generator, "block_in_strips", lambda *a, **k: results.append(original(*a, **k))
                        or results[-1])
    render(generator, EVERY_BLOCK, latent)
    assert [features is None for features, _ in results] == [False] * (len(results) - 1) + [True]
    assert results[-1][1].shape == (1, 3, 64, 64)


def test_strip_rows_hold_about_strip_bytes():
    size = EVERY_BLOCK.strip_bytes
    assert strips.strip_rows(1024, 32, 4, size) == 128          # 128 rows x 1024 x 32 channels x 4 B = 16 MiB
    assert strips.strip_rows(512, 64, 4, size) == 128
    assert strips.strip_rows(8192, 512, 4, size) == 8           # never fewer than 8 rows
    assert strips.strip_rows(1000, 30, 4, size) % 2 == 0
