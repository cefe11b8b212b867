"""The reference generator: shapes at its boundaries, render sizes, delta names, and what its modules print."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig
from hyperstyle_core.testing import tiny_generator, tiny_generator_config


def test_render_size_draws_what_a_smaller_generator_draws():
    big = tiny_generator(size=64)
    small = Generator(tiny_generator_config(size=32)).eval()
    missing, unexpected = small.load_state_dict(big.state_dict(), strict=False)
    assert not missing and unexpected                         # the 64-px layers are the only extra keys
    latent = torch.randn(2, big.config.style_dim)
    with torch.no_grad():
        assert torch.equal(big(latent, render_size=32), small(small.broadcast_latent(latent)[:, :small.n_latent]))
        assert big(latent, render_size=64).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match=r"render_size must be one of \[8, 16, 32, 64\] for this 64px generator"):
        big(latent, render_size=48)


def test_per_sample_loop_and_grouped_conv_render_the_same_images():
    """impl="ref" (one conv per sample) against the official grouped conv, with per-sample deltas."""
    generator = tiny_generator(size=64)
    latent = torch.randn(3, generator.config.style_dim, generator=torch.Generator().manual_seed(1))
    rng = torch.Generator().manual_seed(2)
    deltas = {name: 0.1 * torch.randn(3, out, inp, k, k, generator=rng) for name, out, inp, k in generator.layer_table}
    with torch.no_grad():
        ref = generator(latent, deltas, impl="ref")
        grouped = generator(latent, deltas, impl="grouped")
        plain = generator(latent, impl="ref")
    assert ref.shape == (3, 3, 64, 64)
    torch.testing.assert_close(grouped, ref, rtol=1e-5, atol=1e-5 * float(ref.abs().max()))
    assert (plain - ref).abs().max() > 0.01                   # the deltas change the images


def test_generator_refuses_an_unknown_impl():
    generator = Generator(GeneratorConfig(8, style_dim=8, n_mlp=1, channel_divisor=64)).eval()
    latent = torch.zeros(1, 8)
    with pytest.raises(ValueError, match="impl must be one of auto, ref, grouped, got 'fast'"):
        generator(latent, impl="fast")
    assert torch.equal(generator(latent, impl="ref"), generator(latent, impl="ref"))


def test_boundaries_name_the_wrong_shape():
    generator = tiny_generator(size=32)
    d = generator.config.style_dim
    with pytest.raises(ValueError, match=rf"latent has shape \[2, 7\]; this 32px generator expects W \[B, {d}\]"):
        generator(torch.zeros(2, 7))
    codes = generator.style_codes(torch.zeros(2, d))
    codes["convs.0"] = codes["convs.0"][:, :-1]
    with pytest.raises(ValueError, match=r"style code of convs.0 has shape \[2, \d+\], expected \[2, \d+\]"):
        generator(style_codes=codes)
    with pytest.raises(ValueError, match=r"weight deltas for layers \['convs.40'\] that this 32px generator"):
        generator(torch.zeros(1, d), {"convs.40": torch.zeros(1)})


def test_modules_say_what_they_are():
    text = repr(tiny_generator(size=32))
    assert text.startswith("Generator(\n  size=32, style_dim=32, n_latent=8")
    assert "ModulatedConv2d(\n        32, 32, kernel_size=3, demodulate=True, upsample=True" in text
    assert "EqualLinear(in_dim=32, out_dim=32, lr_mul=0.01, activation=True)" in text
