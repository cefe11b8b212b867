"""The generator's inference pass (nn/engine/generator.py) against the reference `Generator.forward`: folded
layers, per-sample blocks of batches, render sizes, shared and per-sample deltas."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hyperstyle_core.nn.engine import folded, generator as engine_generator, plan_inference, render
from hyperstyle_core.testing import tiny_generator

CPU = torch.device("cpu")


def assert_images_close(got: torch.Tensor, want: torch.Tensor, rel: float = 1e-5) -> None:
    """Equal up to float32 rounding: another order of products moves the images by a few ulps of their range (a
    missing gain, bias or noise term moves them by a large part of it)."""
    assert got.shape == want.shape
    error = float((got - want).abs().max())
    assert error <= rel * float(want.abs().max()), f"max error {error:.3g} for images up to {want.abs().max():.3g}"


@pytest.mark.parametrize("randomize_noise", [False, True])
@pytest.mark.parametrize("device_rules", ["cpu", "other"])
def test_folded_layers_draw_the_reference_images(monkeypatch, randomize_noise, device_rules):
    """Every StyledConv runs folded (gain and bias inside its conv) and the images equal the reference's, fresh
    noise included (drawn in the same order), under the CPU rules and the other devices' rules."""
    generator = tiny_generator(size=64, divisor=16)
    for conv in generator.convs:                            # non-zero noise weights and biases, so both count
        conv.noise.weight.data.fill_(0.3)
        conv.activate.bias.data.normal_(generator=torch.Generator().manual_seed(7))
    latent = torch.randn(2, generator.config.style_dim, generator=torch.Generator().manual_seed(8))
    delta = {"convs.2": 0.1 * torch.randn(2, *generator.convs[2].conv.weight.shape[1:])}
    plan = plan_inference(CPU, torch.float32)
    if device_rules == "other":
        plan = replace(plan, feature_format=torch.contiguous_format, per_sample_min_area=None, strip_min_bytes=None,
                       separable_skips=False)
    calls = []
    original = folded.styled_conv
    monkeypatch.setattr(folded, "styled_conv", lambda *a: calls.append(1) or original(*a))
    torch.manual_seed(9)
    fast = render(generator, plan, latent, delta, randomize_noise=randomize_noise)
    torch.manual_seed(9)
    with torch.no_grad():
        ref = generator(latent, delta, randomize_noise=randomize_noise, impl="ref")
    torch.manual_seed(9)
    with_grad = generator(latent, delta, randomize_noise=randomize_noise)
    assert len(calls) == 1 + len(generator.convs)
    assert_images_close(fast, ref)
    assert_images_close(with_grad.detach(), ref)
    assert (fast - generator(latent, impl="ref").detach()).abs().max() > 0.01          # the delta was applied


@pytest.mark.parametrize("delta_kind", ["none", "per_sample", "shared", "four_dim"])
@pytest.mark.slow
def test_batches_render_their_large_blocks_one_sample_at_a_time(monkeypatch, delta_kind):
    """A batch's >= 256-px blocks run one sample at a time (as a batch of one): every sample equals the reference
    and the same sample rendered alone, for batch-wide, shared and [out, in, k, k] deltas."""
    generator = tiny_generator(size=512, divisor=32)
    latent = torch.randn(3, 512 // 32, generator=torch.Generator().manual_seed(1))
    shapes = {name: generator.convs[i].conv.weight.shape[1:] for i, name in ((12, "convs.12"), (13, "convs.13"))}
    shapes["convs.2"] = generator.convs[2].conv.weight.shape[1:]
    rng = torch.Generator().manual_seed(2)
    deltas = {"none": None,
              "per_sample": {n: torch.randn(3, *shape, generator=rng) * 0.1 for n, shape in shapes.items()},
              "shared": {n: torch.randn(1, *shape, generator=rng) * 0.1 for n, shape in shapes.items()},
              "four_dim": {n: torch.randn(*shape, generator=rng) * 0.1 for n, shape in shapes.items()}}[delta_kind]
    plan = plan_inference(CPU, torch.float32)
    blocks = []
    original = engine_generator._block
    monkeypatch.setattr(engine_generator, "_block", lambda g, b, *a: blocks.append((b, a[2])) or original(g, b, *a))
    batched = render(generator, plan, latent, deltas)
    calls = list(blocks)
    alone = [render(generator, plan, latent[i:i + 1], None if deltas is None else {
        n: d[i:i + 1] if d.ndim == 5 and d.shape[0] == 3 else d for n, d in deltas.items()}) for i in range(3)]
    with torch.no_grad():
        ref = generator(latent, deltas, impl="ref")
    first = len(generator.to_rgbs) - 2         # the 256-px block: (block, batch) calls
    assert calls == [(b, 3) for b in range(first)] + [(first, 1), (first + 1, 1)] * 3
    assert_images_close(batched, ref)
    for i in range(3):
        assert_images_close(batched[i:i + 1], alone[i])


def test_batched_1024_generator_blocks_from_256_px_run_per_sample_in_strips(monkeypatch):
    """At batch 2 the 256- to 1024-px blocks run per sample and, with maps this large, in strips."""
    generator = tiny_generator(size=1024, divisor=32)
    plan = replace(plan_inference(CPU, torch.float32), strip_min_bytes=4 * 2 ** 20 // 32)   # tiny widths' 256 px
    calls = []
    original = engine_generator.block_in_strips
    monkeypatch.setattr(engine_generator, "block_in_strips", lambda *a, **k: calls.append(a[3].shape[2])
                        or original(*a, **k))
    latent = torch.randn(2, 512 // 32, generator=torch.Generator().manual_seed(1))
    batched = render(generator, plan, latent)
    with torch.no_grad():
        ref = generator(latent, impl="ref")
    assert calls == [128, 256, 512, 128, 256, 512]          # block inputs: per sample, 128 -> 256 px and up
    assert_images_close(batched, ref)


def test_render_size_stops_where_the_reference_stops():
    generator = tiny_generator(size=64)
    latent = torch.randn(2, generator.config.style_dim, generator=torch.Generator().manual_seed(3))
    plan = plan_inference(CPU, torch.float32)
    for size in (8, 32, 64):
        with torch.no_grad():
            ref = generator(latent, render_size=size)
        assert_images_close(render(generator, plan, latent, render_size=size), ref)
    with pytest.raises(ValueError, match=r"render_size must be one of \[8, 16, 32, 64\]"):
        render(generator, plan, latent, render_size=48)


def test_style_codes_render_as_in_the_reference():
    generator = tiny_generator(size=32)
    latent = torch.randn(2, generator.config.style_dim, generator=torch.Generator().manual_seed(4))
    codes = {name: code * 1.1 for name, code in generator.style_codes(latent).items()}
    with torch.no_grad():
        ref = generator(style_codes=codes)
    assert_images_close(render(generator, plan_inference(CPU, torch.float32), style_codes=codes), ref)


def test_render_keeps_out_of_autograd_and_leaves_the_inputs_alone():
    generator = tiny_generator(size=32).requires_grad_(True)
    latent = torch.randn(1, generator.config.style_dim, requires_grad=True)
    delta = {"convs.0": 0.1 * torch.randn(1, *generator.convs[0].conv.weight.shape[1:])}
    kept = delta["convs.0"].clone()
    images = render(generator, plan_inference(CPU, torch.float32), latent, delta)
    assert not images.requires_grad and torch.equal(delta["convs.0"], kept)
