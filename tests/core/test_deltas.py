"""WeightDeltas: arithmetic, selection, batching, I/O round trip, compatibility errors,
and their effect on rendering."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core import GeneratorConfig, GeneratorSignature, TOONIFY_LAYERS, WeightDeltas, generate
from hyperstyle_core.batched import batch_ranges, generate_in_batches
from hyperstyle_core.nn.stylegan2 import Generator, modulated_layer_table


def _signature(size: int = 256) -> GeneratorSignature:
    return GeneratorSignature.of(GeneratorConfig(size))


def _random_deltas(size: int = 256, batch: int = 2, layers=(0, 14, 15, 17), seed: int = 0) -> WeightDeltas:
    sig = _signature(size)
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for idx in layers:
        name, out, inp, k = sig.layers[idx]
        tensors[name] = 0.05 * torch.randn(batch, out, inp, k, k, generator=g)
    return WeightDeltas(tensors, sig)


def test_layer_table_matches_official_index_map():
    table = modulated_layer_table(GeneratorConfig(1024))
    assert len(table) == 26
    assert table[0] == ("conv1", 512, 512, 3) and table[1] == ("to_rgb1", 3, 512, 1)
    assert table[2][0] == "convs.0" and table[4][0] == "to_rgbs.0"
    # refinement_blocks.py PARAMETERS: 14: 512->256, 17: 256->128, 20: 128->64, 23: 64->32, 24: 32->32
    assert table[14] == ("convs.8", 256, 512, 3)
    assert table[17] == ("convs.10", 128, 256, 3)
    assert table[20] == ("convs.12", 64, 128, 3)
    assert table[23] == ("convs.14", 32, 64, 3)
    assert table[24] == ("convs.15", 32, 32, 3)
    assert table[25] == ("to_rgbs.7", 3, 32, 1)


def test_official_list_round_trip():
    d = _random_deltas()
    lst = d.to_official_list()
    assert len(lst) == 20 and lst[1] is None and lst[14] is not None
    back = WeightDeltas.from_official_list(lst, d.signature)
    assert list(back) == list(d)
    assert all(torch.equal(back[n], d[n]) for n in d)


def test_scale_add_and_inputs_not_mutated():
    a = _random_deltas(seed=1)
    b = _random_deltas(seed=2, layers=(0, 14))
    a_before = {n: t.clone() for n, t in a.items()}
    s = a + b
    assert torch.allclose(s["conv1"], a["conv1"] + b["conv1"])
    assert torch.equal(s["convs.9"], a["convs.9"])            # layer only in a counts b as zero
    assert torch.allclose((a * 0.5)["convs.8"], a["convs.8"] / 2)
    assert torch.allclose((2 * a)["convs.8"], a["convs.8"] * 2)
    assert all(torch.equal(a[n], a_before[n]) for n in a)


def test_select_by_index_and_toonify_preset():
    d = _random_deltas(layers=(0, 2, 14, 15, 17, 18))
    toon = d.select(TOONIFY_LAYERS)
    assert toon.layer_indices == [14, 15, 17, 18]               # 20+ do not exist at 256
    assert list(d.select(["conv1"])) == ["conv1"]


def test_index_and_cat_batches():
    d = _random_deltas(batch=3)
    one = d.index(1)
    assert one.batch_size == 1 and torch.equal(one["conv1"][0], d["conv1"][1])
    joined = WeightDeltas.cat([d.index(0), d.index(1), d.index(2)])
    assert joined.batch_size == 3
    assert all(torch.equal(joined[n], d[n]) for n in d)
    with pytest.raises(ValueError, match="different layers"):
        WeightDeltas.cat([d, d.select([0])])


def test_bad_shapes_and_layers_are_rejected():
    sig = _signature()
    with pytest.raises(ValueError,
                       match=r"delta for convs\.8 has shape \[1, 512, 512, 3, 3\], expected \[B, 256, 512, 3, 3\]"):
        WeightDeltas({"convs.8": torch.zeros(1, 512, 512, 3, 3)}, sig)
    with pytest.raises(ValueError, match="unknown layer 'convs.20'"):
        WeightDeltas({"convs.20": torch.zeros(1, 32, 32, 3, 3)}, sig)
    with pytest.raises(ValueError, match="batch sizes differ"):
        WeightDeltas({"conv1": torch.zeros(1, 512, 512, 3, 3), "convs.0": torch.zeros(2, 512, 512, 3, 3)}, sig)


def test_save_load_round_trip(tmp_path):
    d = _random_deltas()
    path = tmp_path / "deltas.safetensors"
    d.save(path, extra_metadata={"source": "test"})
    back = WeightDeltas.load(path)
    assert back.signature == d.signature
    assert list(back) == list(d)
    assert all(torch.equal(back[n], d[n]) for n in d)
    assert not list(tmp_path.glob("*.partial"))


def test_loading_a_model_file_as_deltas_fails_clearly(tmp_path):
    from safetensors.torch import save_file
    p = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(1)}, str(p), metadata={"format": "hyperstyle_core.checkpoint"})
    with pytest.raises(ValueError, match="not a weight-deltas file"):
        WeightDeltas.load(p)


def test_256_deltas_on_1024_generator_are_refused():
    d = _random_deltas(size=256, batch=1)
    with torch.device("meta"):
        big = Generator(GeneratorConfig(1024))
    with pytest.raises(ValueError, match=r"made for a 256px generator, this one is 1024px.*load a 256px generator"):
        d.check_compatible(big)


def test_channel_mismatch_names_first_layer():
    d = _random_deltas(size=256, batch=1)
    other = GeneratorSignature.of(GeneratorConfig(256, channel_multiplier=1))
    problem = d.signature.mismatch(other)
    assert problem == "layer convs.6 is 512x512x3x3 in the deltas but convs.6 is 256x512x3x3 in this generator"


@pytest.fixture(scope="module")
def tiny_generator():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(32, style_dim=32, n_mlp=2, channel_divisor=16)).eval().requires_grad_(False)


def test_deltas_change_the_render_and_zero_strength_does_not(tiny_generator):
    g = tiny_generator
    sig = GeneratorSignature.of(g)
    latent = torch.randn(2, 32)
    name, out, inp, k = sig.layers[2]
    d = WeightDeltas({name: 0.3 * torch.randn(2, out, inp, k, k)}, sig)
    plain = generate(g, latent)
    edited = generate(g, latent, d)
    assert not torch.allclose(plain, edited, atol=1e-3)
    assert torch.allclose(generate(g, latent, d, strength=0.0), plain, atol=1e-5)
    # A delta of -1 on every layer zeroes the weights (w * (1 - 1)): demodulation then maps them to 0 output.
    zero = WeightDeltas({n: -torch.ones(2, o, i, kk, kk) for n, o, i, kk in sig.layers if kk == 3}, sig)
    assert torch.isfinite(generate(g, latent, zero)).all()


def test_batch_one_deltas_broadcast_and_mismatch_is_refused(tiny_generator):
    g = tiny_generator
    sig = GeneratorSignature.of(g)
    name, out, inp, k = sig.layers[0]
    d1 = WeightDeltas({name: 0.2 * torch.randn(1, out, inp, k, k)}, sig)
    latents = torch.randn(3, 32)
    batched = generate(g, latents, d1)
    for i in range(3):
        assert torch.allclose(batched[i:i + 1], generate(g, latents[i:i + 1], d1), atol=1e-5)
    d2 = WeightDeltas({name: torch.zeros(2, out, inp, k, k)}, sig)
    with pytest.raises(ValueError, match="deltas have batch 2 but there are 3 latents"):
        generate(g, latents, d2)


def test_generate_in_batches_matches_one_call(tiny_generator):
    g = tiny_generator
    sig = GeneratorSignature.of(g)
    name, out, inp, k = sig.layers[1]
    latents = torch.randn(5, 32)
    per_code = WeightDeltas({name: 0.2 * torch.randn(5, out, inp, k, k)}, sig)
    shared = per_code.index(slice(2, 3))
    calls = []
    for deltas in (None, per_code, shared):
        whole = generate(g, latents, deltas, strength=0.7)
        batched = generate_in_batches(g, latents, deltas, strength=0.7, batch_size=2, on_batch=calls.append)
        assert batched.device.type == "cpu" and batched.shape == whole.shape
        assert torch.allclose(batched, whole, atol=1e-5)
    assert calls == [2, 2, 1] * 3
    with pytest.raises(ValueError, match="2 sets of deltas for 5 latents; use one set, or one per latent"):
        generate_in_batches(g, latents, per_code.index(slice(0, 2)))
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        generate_in_batches(g, latents, batch_size=0)
    assert batch_ranges(5, 2) == [(0, 2), (2, 4), (4, 5)] and batch_ranges(0, 3) == []


def test_generator_fast_path_matches_reference(tiny_generator):
    g = tiny_generator
    sig = GeneratorSignature.of(g)
    latent = g.broadcast_latent(torch.randn(3, 32))
    deltas = {n: 0.1 * torch.randn(3, o, i, k, k) for n, o, i, k in sig.layers}
    with torch.no_grad():
        for d in (None, deltas):
            ref = g(latent, d, impl="ref")
            fast = g(latent, d, impl="auto")
            assert torch.allclose(ref, fast, atol=1e-5)
    # With gradients on, the out-of-place path gives the same result.
    with torch.enable_grad():
        assert torch.allclose(g(latent, deltas), ref, atol=1e-5)


def test_stored_vs_random_noise(tiny_generator):
    g = tiny_generator
    with torch.no_grad():
        g.convs[0].noise.weight.fill_(0.5)
        latent = torch.randn(2, 32)
        a, b = g(latent), g(latent)
        assert torch.equal(a, b)
        r1, r2 = g(latent, randomize_noise=True), g(latent, randomize_noise=True)
        assert not torch.allclose(r1, r2)
        # Each sample draws its own noise: identical latents give different images.
        same = g(torch.cat([latent[:1], latent[:1]]), randomize_noise=True)
        assert not torch.allclose(same[0], same[1])
        g.convs[0].noise.weight.zero_()


def test_latent_forms(tiny_generator):
    g = tiny_generator
    w = torch.randn(2, 32)
    with torch.no_grad():
        assert torch.allclose(g(w), g(w[:, None].repeat(1, g.n_latent, 1)))
        s = g.style_codes(w)
        assert torch.allclose(g(style_codes=s), g(w))
    with pytest.raises(ValueError, match=r"expects W \[B, 32\] or W\+ \[B, 8, 32\]"):
        g.broadcast_latent(torch.randn(2, 5, 32))
