"""Speed paths (issue 14): every fast path against its reference, and fast mode's quality cost (computed, printed)."""
from __future__ import annotations

import importlib
import logging
import warnings

import pytest
import torch

from hyperstyle_core import invert
from hyperstyle_core.nn import fast, hypernetwork, ops
from hyperstyle_core.nn.hypernetwork import (RefinementBlock, SharedWeightsHypernet, first_product,
                                             first_product_form, matrix_vector_groups, matrix_vector_in_groups,
                                             one_by_one_output)
from hyperstyle_core.nn import stylegan2
from hyperstyle_core.nn.stylegan2 import Generator
from hyperstyle_core.testing import make_tiny_models, tiny_generator, tiny_generator_config

log = logging.getLogger(__name__)     # measurements, shown with --log-cli-level=INFO


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


@pytest.mark.parametrize("delta_kind", ["none", "batch", "one", "broadcast"])
@pytest.mark.parametrize("demodulate", [True, False])
def test_inplace_modulated_weight_is_bit_identical_to_the_reference(delta_kind, demodulate):
    torch.manual_seed(0)
    weight, styles = torch.randn(5, 4, 3, 3), torch.randn(3, 4) + 1
    delta = {"none": None, "batch": 0.1 * torch.randn(3, 5, 4, 3, 3), "one": 0.1 * torch.randn(1, 5, 4, 3, 3),
             "broadcast": 0.1 * torch.randn(5, 4, 3, 3)}[delta_kind]
    reference = ops.modulated_weight(weight, styles, 0.3, delta, demodulate)      # autograd on: the reference path
    with torch.no_grad():
        inplace = ops.modulated_weight(weight, styles, 0.3, delta, demodulate)
    assert inplace.shape == reference.shape == (3, 5, 4, 3, 3)
    assert torch.equal(inplace, reference)
    if delta is not None:
        assert torch.equal(delta, delta.clone())                                      # inputs are never written


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_per_sample_conv_matches_the_reference(upsample, memory_format):
    torch.manual_seed(1)
    batch, cin, cout = 3, 4, 5
    x = torch.randn(1, batch * cin, 8, 8).contiguous(memory_format=memory_format)
    w = torch.randn(batch, cout, cin, 3, 3)
    blur = ops.make_blur_kernel([1, 3, 3, 1], 4.0) if upsample else None
    ref = ops.conv_packed(x, w, upsample, blur, impl="ref")
    per_sample = ops.conv_packed(x, w, upsample, blur, impl="per_sample")
    grouped = ops.conv_packed(x, w, upsample, blur, impl="grouped")
    assert per_sample.shape == ref.shape == (1, batch * cout, 16 if upsample else 8, 16 if upsample else 8)
    assert torch.allclose(per_sample, ref, atol=1e-5)
    assert torch.allclose(grouped, ref, atol=1e-5)


@pytest.mark.parametrize("impl", ["grouped", "per_sample", "ref"])
@pytest.mark.parametrize("upsample", [False, True])
def test_conv_bias_rides_in_the_conv_pass(impl, upsample):
    """conv_packed(bias=...) equals the conv without bias plus the bias, for every implementation."""
    torch.manual_seed(4)
    batch, cin, cout = 2, 4, 5
    x = torch.randn(1, batch * cin, 8, 8).contiguous(memory_format=torch.channels_last)
    w, bias = torch.randn(batch, cout, cin, 3, 3), torch.randn(batch * cout)
    blur = ops.make_blur_kernel([1, 3, 3, 1], 4.0) if upsample else None
    want = ops.conv_packed(x, w, upsample, blur, impl="ref") + bias.view(1, -1, 1, 1)
    got = ops.conv_packed(x, w, upsample, blur, impl=impl, bias=bias)
    assert got.shape == want.shape
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(got, want - bias.view(1, -1, 1, 1), atol=1e-2)        # the bias is really there


@pytest.mark.parametrize("taps", [[1, 3, 3, 1], [1, 2, 1], [1, 1], [1, 4, 6, 4, 1], [1, 2, 3, 4, 5, 6]])
@pytest.mark.parametrize("size", [(7, 7), (8, 5)])
def test_separable_upsample_matches_upfirdn(taps, size):
    """The RGB skips' fast 2x up-sampling (two 1-D polyphase passes) equals upfirdn2d's for symmetric and lopsided
    FIR filters, odd and even sizes, in either memory format."""
    torch.manual_seed(5)
    kernel = ops.make_blur_kernel(taps, 4.0)
    assert ops.separable_taps(kernel) is not None
    for x in (torch.randn(2, 3, *size), torch.randn(2, 3, *size).contiguous(memory_format=torch.channels_last)):
        want = ops.upsample2x(x, kernel)
        got = ops.upsample2x_separable(x, kernel)
        assert got.shape == want.shape == (2, 3, 2 * size[0], 2 * size[1])
        assert torch.allclose(got, want, atol=1e-6)


def test_separable_upsample_takes_upfirdn_for_a_kernel_that_is_not_an_outer_product(monkeypatch):
    """A checkpoint's up-sampling kernel buffer could be any 2-D filter: only outer products are split."""
    torch.manual_seed(6)
    kernel = ops.make_blur_kernel([1, 3, 3, 1], 4.0)
    kernel[0, 1] += 0.05
    assert ops.separable_taps(kernel) is None
    assert ops.separable_taps(torch.zeros(4, 4)) is None
    x = torch.randn(1, 3, 6, 5)
    assert torch.allclose(ops.upsample2x_separable(x, kernel), ops.upsample2x(x, kernel), atol=1e-6)
    monkeypatch.setattr(ops, "_upsample2x_along", lambda *a: pytest.fail("the separable passes ran"))
    ops.upsample2x_separable(x, kernel)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_weight_gain_scales_the_weights(demodulate):
    torch.manual_seed(6)
    weight, styles, delta = torch.randn(5, 4, 3, 3), torch.randn(2, 4) + 1, 0.1 * torch.randn(2, 5, 4, 3, 3)
    plain = ops.modulated_weight(weight, styles, 0.3, delta, demodulate)
    scaled = ops.modulated_weight(weight, styles, 0.3, delta, demodulate, gain=ops.SQRT2)
    with torch.no_grad():
        scaled_inplace = ops.modulated_weight(weight, styles, 0.3, delta, demodulate, gain=ops.SQRT2)
    assert torch.allclose(scaled, plain * ops.SQRT2, rtol=1e-6, atol=0)
    assert torch.allclose(scaled_inplace, plain * ops.SQRT2, rtol=1e-6, atol=0)


@pytest.mark.parametrize("randomize_noise", [False, True])
def test_folded_layer_epilogues_match_the_reference_and_run_only_without_gradients(monkeypatch, randomize_noise):
    """Inference folds each StyledConv's bias and sqrt(2) gain into its conv (two passes over the features instead
    of four) and ToRGB's bias into its 1x1 conv; the images equal the reference's, and with gradients on (training)
    or impl="ref" the layers run as written in the official code."""
    generator = tiny_generator(size=64, divisor=16)
    for conv in generator.convs:                            # non-zero noise weights and biases, so both count
        conv.noise.weight.data.fill_(0.3)
        conv.activate.bias.data.normal_(generator=torch.Generator().manual_seed(7))
    latent = torch.randn(2, generator.config.style_dim, generator=torch.Generator().manual_seed(8))
    delta = {"convs.2": 0.1 * torch.randn(2, *generator.convs[2].conv.weight.shape[1:])}
    folded = []
    original = stylegan2.StyledConv._forward_folded
    monkeypatch.setattr(stylegan2.StyledConv, "_forward_folded",
                        lambda self, *a: folded.append(1) or original(self, *a))

    def render(impl):
        torch.manual_seed(9)                                # the same fresh noise in every call
        return generator(latent, delta, randomize_noise=randomize_noise, impl=impl)

    with torch.no_grad():
        fast_images = render("auto")
        n_folded = len(folded)
        ref = render("ref")
    assert n_folded == 1 + len(generator.convs) and len(folded) == n_folded    # every layer; none under "ref"
    with_grad = render("auto")
    assert len(folded) == n_folded                                             # none with gradients on
    assert torch.allclose(fast_images, ref, atol=1e-5)
    assert torch.allclose(with_grad.detach(), ref, atol=1e-5)


def test_auto_runs_large_batched_layers_per_sample():
    """CPU batches run outputs of 256x256 and more one sample at a time (those blocks then go in strips)."""
    x = torch.zeros(1, 8, 128, 128)
    assert ops._per_sample_pays(x, batch=2, upsample=True)          # 128 -> 256 transposed conv
    assert not ops._per_sample_pays(x, batch=2, upsample=False)     # 128 -> 128
    assert not ops._per_sample_pays(torch.zeros(1, 4, 512, 512), batch=1, upsample=False)  # batch 1: one conv
    assert ops._per_sample_pays(torch.zeros(1, 8, 256, 256), batch=2, upsample=False)
    assert not ops.per_sample_pays(torch.device("meta"), 2, 1024 * 1024)                # GPUs: grouped convs


def test_batched_1024_generator_blocks_from_256_px_run_per_sample_in_strips(monkeypatch):
    """At batch 2 the 256- to 1024-px blocks run per sample, in strips (one sample's maps of FFHQ widths reach 32
    MiB there); the images equal the reference."""
    from hyperstyle_core.nn import strips
    generator = tiny_generator(size=1024, divisor=32)
    monkeypatch.setattr(strips, "MIN_MAP_BYTES", 4 * 2 ** 20 // 32)     # the tiny widths' 256-px maps
    calls = []
    original = strips.block_in_strips
    monkeypatch.setattr(strips, "block_in_strips", lambda *a, **k: calls.append(a[3].shape[2]) or original(*a, **k))
    latent = torch.randn(2, 512 // 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        auto = generator(latent)
        ref = generator(latent, impl="ref")
    assert calls == [128, 256, 512, 128, 256, 512]          # block inputs: per sample, 128 -> 256 px and up
    assert torch.allclose(auto, ref, atol=1e-4)


def test_batched_512_generator_auto_matches_reference():
    """A 512-px generator at batch 2 goes through both conv forms under `auto`; each sample equals the reference."""
    generator = tiny_generator(size=512, divisor=32)
    latent = torch.randn(2, 512 // 32)
    with torch.no_grad():
        auto = generator(latent)
        ref = generator(latent, impl="ref")
    assert torch.allclose(auto, ref, atol=1e-4)


@pytest.mark.parametrize("delta_kind", ["none", "per_sample", "shared", "four_dim"])
def test_batches_render_their_large_blocks_one_sample_at_a_time(monkeypatch, delta_kind):
    """On CPU a batch's >= 256-px blocks run one sample at a time (as a batch of one): every sample equals the
    reference, and the same sample rendered alone, for batch-wide, shared and [out, in, k, k] deltas."""
    generator = tiny_generator(size=512, divisor=32)
    latent = torch.randn(3, 512 // 32, generator=torch.Generator().manual_seed(1))
    shapes = {name: generator.convs[i].conv.weight.shape[1:] for i, name in ((12, "convs.12"), (13, "convs.13"))}
    shapes["convs.2"] = generator.convs[2].conv.weight.shape[1:]
    rng = torch.Generator().manual_seed(2)
    deltas = {"none": None,
              "per_sample": {n: torch.randn(3, *shape, generator=rng) * 0.1 for n, shape in shapes.items()},
              "shared": {n: torch.randn(1, *shape, generator=rng) * 0.1 for n, shape in shapes.items()},
              "four_dim": {n: torch.randn(*shape, generator=rng) * 0.1 for n, shape in shapes.items()}}[delta_kind]
    blocks = []
    original = Generator._block
    monkeypatch.setattr(Generator, "_block", lambda self, b, *a: blocks.append((b, a[2])) or original(self, b, *a))
    with torch.no_grad():
        auto = generator(latent, deltas)
        calls = list(blocks)
        ref = generator(latent, deltas, impl="ref")
        alone = [generator(latent[i:i + 1], None if deltas is None else {
            n: d[i:i + 1] if d.ndim == 5 and d.shape[0] == 3 else d for n, d in deltas.items()}) for i in range(3)]
    first = len(generator.to_rgbs) - 2         # the 256-px block: (block, batch) calls
    per_sample = [(first, 1), (first + 1, 1)] * 3
    assert calls == [(b, 3) for b in range(first)] + per_sample
    assert torch.allclose(auto, ref, atol=1e-4)
    for i in range(3):
        assert torch.allclose(auto[i:i + 1], alone[i], atol=1e-5)


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


@pytest.mark.parametrize("batch", [1, 4])
def test_one_by_one_output_layer_matches_the_conv_with_gradients(batch):
    torch.manual_seed(2)
    conv = torch.nn.Conv2d(16, 300, kernel_size=1)
    x = torch.randn(batch, 16, 1, 1, requires_grad=True)
    want = conv(x).view(batch, -1)
    got = one_by_one_output(x, conv)
    assert torch.allclose(got, want, atol=1e-6)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    assert torch.allclose(g_got, g_want, atol=1e-5)             # training can use it: autograd-correct
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


def test_matrix_vector_groups_follow_threads_rows_batch_and_gradients(monkeypatch):
    """One group per torch thread for a single sample's product on CPU, a divisor of the row count; a batch, or
    gradients (training keeps the official addmm), leave it whole."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    weight, one = torch.randn(360, 8), torch.randn(1, 8)
    with torch.no_grad():
        assert matrix_vector_groups(weight, one) == 4
        assert matrix_vector_groups(torch.randn(30, 8), one) == 3           # 4 does not divide 30
        assert matrix_vector_groups(torch.randn(7, 8), one) == 1            # prime row count: no split
        assert matrix_vector_groups(weight, torch.randn(2, 8)) == 1
    assert matrix_vector_groups(weight, one.requires_grad_()) == 1
    calls = []
    monkeypatch.setattr(hypernetwork, "matrix_vector_in_groups",
                        lambda *a: calls.append(a[3]) or matrix_vector_in_groups(*a))
    conv = torch.nn.Conv2d(8, 360, kernel_size=1)
    x = torch.randn(1, 8, 1, 1)
    with torch.no_grad():                                                  # the layer takes the grouped form
        torch.testing.assert_close(one_by_one_output(x, conv), conv(x).view(1, -1), rtol=1e-5, atol=1e-6)
    assert calls == [4]


@pytest.mark.parametrize("capability, rows, form", [("AVX512", 9, "tall_skinny"), ("AVX2", 9, "row_blocks"),
                                                   ("AVX2", 18, "row_blocks"), ("AVX2", 36, "addmm"),
                                                   ("DEFAULT", 9, "row_blocks")])
def test_shared_hypernet_first_product_forms_match_addmm(monkeypatch, capability, rows, form):
    """The first product's form follows the CPU and the row count (issue 14's measurements); every form gives the
    addmm values up to float rounding; with gradients it stays the addmm the official code uses."""
    torch.manual_seed(0)
    hypernet = SharedWeightsHypernet(z_dim=64, in_size=32, out_size=16)
    for p in hypernet.parameters():
        torch.nn.init.normal_(p, std=0.1)
    z = torch.randn(rows, 64)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    with torch.no_grad():
        assert first_product_form(z, hypernet.w2) == form
        reference = torch.addmm(hypernet.b2, z, hypernet.w2)
        got = first_product(z, hypernet.w2, hypernet.b2, form)
        want = torch.addmm(hypernet.b1, reference.view(rows * 32, 64), hypernet.w1).view(rows, 16, 32, 3, 3)
        kernels = hypernet(z)
    torch.testing.assert_close(got, reference, rtol=1e-5, atol=1e-6)
    assert form == "addmm" or not torch.equal(got, reference)       # the other summation order was taken
    torch.testing.assert_close(kernels, want, rtol=1e-5, atol=1e-6)
    assert first_product_form(z, hypernet.w2) == "addmm"           # weights that need gradients (training)
    assert torch.equal(hypernet(z).detach(), want)                 # ... bit for bit
    with pytest.raises(ValueError, match="form must be one of"):
        first_product(z, hypernet.w2, hypernet.b2, "fastest")


@pytest.mark.parametrize("batch", [1, 2])
def test_shared_kernels_per_layer_are_the_forward_rows(monkeypatch, batch):
    """Inference computes each shared layer's kernels as a tensor of its own (9 MiB at batch 1 and full size, reused
    from the heap) from the same rows as the one [9*B*512, 4608] product; the hypernetwork uses that form only without
    gradients, and both give every layer the same kernels."""
    torch.manual_seed(7)
    shared = SharedWeightsHypernet(z_dim=64, in_size=32, out_size=16)
    for p in shared.parameters():
        torch.nn.init.normal_(p, std=0.1)
    z = torch.randn(3 * batch, 64)
    with torch.no_grad():
        whole = shared(z)
        groups = shared.kernels_per_group(z, 3)
    assert [g.shape for g in groups] == [(batch, 16, 32, 3, 3)] * 3
    for i, group in enumerate(groups):
        torch.testing.assert_close(group, whole[i * batch:(i + 1) * batch], rtol=1e-6, atol=1e-7)
        assert group.is_contiguous()
    hs, _ = make_tiny_models(seed=3, size=256)
    x = torch.randn(batch, 6, 256, 256, generator=torch.Generator().manual_seed(8))
    calls = []
    original = SharedWeightsHypernet.kernels_per_group
    monkeypatch.setattr(SharedWeightsHypernet, "kernels_per_group",
                        lambda self, *a: calls.append(1) or original(self, *a))
    with torch.no_grad():
        inference = hs.hypernet(x)
    assert calls == [1]
    training = hs.hypernet(x)
    assert calls == [1]                                            # with gradients: the official single product
    assert inference.keys() == training.keys()
    for name in inference:
        torch.testing.assert_close(inference[name], training[name].detach(), rtol=1e-5, atol=1e-6)


def test_int8_products_are_close_cached_and_rebuilt_after_weight_changes():
    hs, _ = make_tiny_models(seed=3, size=256)                 # 256 px: layers 14+ have 1x1 output layers
    hypernet = hs.hypernet
    products = fast.int8_products(hypernet)
    assert fast.int8_products(hypernet) is products              # cast once
    shared = hypernet.shared_weight_hypernet
    z = torch.randn(5, shared.z_dim)
    exact = torch.addmm(shared.b2, z, shared.w2)
    approx = products.shared()(z)
    assert approx.shape == exact.shape
    assert (approx - exact).norm() / exact.norm() < 0.1           # int8: 2 % at K=512, ~7 % at this K=16
    name = next(n for n, b in zip(hypernet.layer_names, hypernet.refinement_blocks) if isinstance(b, RefinementBlock))
    assert products.output(name) is not None and products.output("conv1") is None
    with torch.no_grad():
        shared.w2.mul_(2)
    rebuilt = fast.int8_products(hypernet)
    assert rebuilt is not products
    assert torch.allclose(rebuilt.shared()(z), 2 * approx - shared.b2, rtol=0.05, atol=0.05 * exact.abs().max().item())


def _whole_matrix_int8(weight: torch.Tensor, bias: torch.Tensor | None):
    """The plain recipe: quantize_per_channel of the whole float32 matrix, one packed matrix."""
    weight = weight.float().contiguous()
    scales = weight.abs().amax(dim=1).clamp_min(1e-12).div_(127.0).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)                  # the quantized constructors' deprecation note
        qweight = torch.quantize_per_channel(weight, scales, torch.zeros(weight.shape[0], dtype=torch.long), 0,
                                             torch.qint8)
        packed = torch.ops.quantized.linear_prepack(qweight, bias)
    return lambda x: torch.ops.quantized.linear_dynamic(x, packed)


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("with_bias", [False, True])
def test_int8_packing_in_parts_and_chunks_equals_one_packed_matrix(transposed, with_bias):
    # Parts of 40 rows, quantised 16 rows at a time, on two threads: the products must be the very numbers of one
    # packed matrix quantised whole (w2 is packed as a transposed view, the output layers as plain matrices).
    torch.manual_seed(0)
    weight = 0.05 * torch.randn(512, 100) if transposed else 0.05 * torch.randn(100, 512)
    weight = weight.t() if transposed else weight                     # [100 rows, 512]; strides (1, 100) if transposed
    weight[7] = 0                                                     # an all-zero row (scale clamped, output = bias)
    bias = torch.randn(100) if with_bias else None
    products = fast.pack_linears({"m": (weight, bias)}, part_bytes=40 * 512 * 4, chunk_bytes=16 * 512 * 4, workers=2)
    x = torch.randn(9, 512)
    got = products["m"](x)
    assert got.shape == (9, 100)
    assert torch.equal(got, _whole_matrix_int8(weight, bias)(x))
    exact = x @ weight.t() + (0 if bias is None else bias)
    assert (got - exact).norm() / exact.norm() < 0.05                 # int8 weights and activations: ~2 %
    assert torch.equal(got[:, 7], torch.zeros(9) if bias is None else bias[7].expand(9))


def test_int8_packing_keeps_matrices_apart_and_packs_each_part_once(monkeypatch):
    torch.manual_seed(1)
    a, b = 0.05 * torch.randn(30, 64), 0.05 * torch.randn(5, 64)
    packed_rows = []
    original = fast._pack_rows
    monkeypatch.setattr(fast, "_pack_rows", lambda w, bias, chunk: packed_rows.append(w.shape[0]) or
                        original(w, bias, chunk))
    products = fast.pack_linears({"a": (a, None), "b": (b, None)}, part_bytes=8 * 64 * 4, workers=2)
    assert sorted(packed_rows) == [5, 6, 8, 8, 8]                    # a in parts of 8 rows (8, 8, 8, 6), b whole
    x = torch.randn(3, 64)
    assert torch.equal(products["a"](x), _whole_matrix_int8(a, None)(x))
    assert torch.equal(products["b"](x), _whole_matrix_int8(b, None)(x))


def test_inplace_accumulation_leaves_the_deltas_given_to_callbacks_alone():
    hs, we = make_tiny_models(seed=4)
    images = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 2 - 1
    held, copies = {}, {}

    def record(i, image, deltas):
        held[i] = dict(deltas)
        copies[i] = {n: t.clone() for n, t in deltas.items()}

    result = invert(images, hs, we, n_iters=3, on_iteration=record)
    for i in (1, 2, 3):
        assert all(torch.equal(held[i][n], copies[i][n]) for n in copies[i])
    # The accumulated deltas are the running sums of the per-iteration predictions.
    assert all(torch.equal(result.deltas[n], copies[3][n]) for n in copies[3])
    assert not torch.equal(copies[2]["conv1"], copies[3]["conv1"])


def test_fast_mode_renders_previews_and_stays_close_to_exact():
    """fast=True on a 512-px model: previews at 256 px, a full final render, quality cost printed (not timed)."""
    hs, we = make_tiny_models(seed=5, size=512, divisor=32)
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(1)) * 2 - 1
    seen = []
    exact = invert(images, hs, we, n_iters=3)
    quick = invert(images, hs, we, n_iters=3, fast=True, on_iteration=lambda i, im, d: seen.append(im.shape))
    assert seen == [(1, 3, 512, 512)] * 3 and quick.initial.shape == exact.initial.shape
    # The previews are scaled-up 256-px renders: smooth, unlike the full render of the same iteration.
    assert quick.images[0][:, :, ::2, ::2].sub(quick.images[0][:, :, 1::2, 1::2]).abs().mean() < \
        exact.images[0][:, :, ::2, ::2].sub(exact.images[0][:, :, 1::2, 1::2]).abs().mean()
    diff = (quick.final - exact.final).abs()
    psnr = _psnr(quick.final, exact.final)
    log.info("fast vs exact (tiny 512 model, 3 iterations): max %.4f mean %.5f PSNR %.1f dB", diff.max(),
             diff.mean(), psnr)
    assert psnr > 20 and not torch.equal(quick.final, exact.final)


def test_fast_mode_uses_bf16_copies_where_bf16_is_fast(monkeypatch):
    """On devices with fast bf16 (CUDA, AVX-512 BF16 / AMX CPUs; forced here) fast mode runs bf16 copies of the
    hypernetwork and generator, cast once; results and deltas come back in float32, close to exact."""
    hs, we = make_tiny_models(seed=7, size=512, divisor=32)
    images = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(2)) * 2 - 1
    exact = invert(images, hs, we, n_iters=2)
    monkeypatch.setattr(fast, "bf16_supported", lambda device: True)
    packed = []
    monkeypatch.setattr(fast, "int8_products", lambda hypernet: packed.append(hypernet))
    quick = invert(images, hs, we, n_iters=2, fast=True)
    assert packed == []                                     # bf16 copies instead of int8 products
    assert quick.final.dtype == torch.float32 and all(d.dtype == torch.float32 for d in quick.deltas.values())
    assert _psnr(quick.final, exact.final) > 20 and not torch.equal(quick.final, exact.final)
    generator_copy, hypernet_copy = fast.bf16_copy(hs.generator), fast.bf16_copy(hs.hypernet)
    assert generator_copy is fast.bf16_copy(hs.generator)  # cast once, kept
    assert all(p.dtype == torch.bfloat16 for p in hypernet_copy.parameters() if p.is_floating_point())
    assert all(p.dtype == torch.float32 for p in hs.hypernet.parameters())      # the model itself is untouched
    with torch.no_grad():
        hs.generator.conv1.conv.weight.mul_(2)            # weights edited in place: a new copy
    assert fast.bf16_copy(hs.generator) is not generator_copy
    assert torch.equal(fast.bf16_copy(hs.generator).conv1.conv.weight, hs.generator.conv1.conv.weight.bfloat16())


def test_fast_must_be_a_bool():
    hs, we = make_tiny_models(seed=6)
    with pytest.raises(ValueError, match="fast must be True or False, got 'yes'"):
        invert(torch.zeros(1, 3, 256, 256), hs, we, n_iters=1, fast="yes")


def test_refine_node_passes_fast_through(pack):
    """HyperStyle Refine's optional `fast` widget (optional and last: workflows saved without it load with it off)."""
    node = pack.NODE_CLASS_MAPPINGS["HyperStyleRefine"]
    spec = node.INPUT_TYPES()["optional"]["fast"]
    assert spec[0] == "BOOLEAN" and not spec[1].get("forceInput") and spec[1]["default"] is False
    core = importlib.import_module(f"{pack.__name__}.hyperstyle_core")    # the pack's copy: nodes check classes
    hs, we = importlib.import_module(f"{pack.__name__}.hyperstyle_core.testing").make_tiny_models(seed=7, size=256)
    image = torch.rand(1, 256, 256, 3, generator=torch.Generator().manual_seed(2))
    latent = core.invert(image.permute(0, 3, 1, 2) * 2 - 1, hs, we, n_iters=1).latent
    exact_deltas, exact_image = node().execute(hs, image, latent, iterations=2)
    fast_deltas, fast_image = node().execute(hs, image, latent, iterations=2, fast=True)
    assert fast_image.shape == exact_image.shape and fast_deltas.layer_indices == exact_deltas.layer_indices
    assert not torch.equal(fast_deltas["convs.10"], exact_deltas["convs.10"])     # int8 output layers were used
    assert torch.allclose(fast_image, exact_image, atol=0.1)


def test_cli_invert_fast_flag_and_allocator_setting(tmp_path, monkeypatch):
    """`hyperstyle invert --fast` reaches invert(fast=True); the CLI (not the library) sets the allocator up."""
    from conftest import SHARED
    from hyperstyle_core.testing import write_tiny_models
    from hyperstyle_core.cli import main
    cli_main = importlib.import_module("hyperstyle_core.cli.commands")

    models = tmp_path / "models"
    write_tiny_models(models)
    calls, modes = [], []
    real_invert = cli_main.invert
    monkeypatch.setattr(cli_main, "keep_freed_memory", lambda: calls.append("allocator") or True)
    monkeypatch.setattr(cli_main, "invert", lambda *a, **k: modes.append(k.get("fast")) or real_invert(*a, **k))
    photo = SHARED / "data" / "photos" / "aligned_affleck.jpg"
    for flags in ([], ["--fast"]):
        code = main(["invert", str(photo), "--models", str(models), "--out", str(tmp_path / "out"),
                     "--iterations", "1", "--device", "cpu", *flags])
        assert code == 0 and (tmp_path / "out" / "aligned_affleck_inversion.png").exists()
    assert modes == [False, True] and calls == ["allocator", "allocator"]


def test_bf16_copies_do_not_inherit_the_originals_hooks():
    """A hook on the model (a profiler's, the benchmark's timers) must not fire on fast mode's copy with the
    original's state: the copy starts without hooks; hooks on the copy itself work."""
    hs, _ = make_tiny_models(seed=3, size=64, divisor=32)
    calls = []
    handle = hs.generator.register_forward_hook(lambda *a: calls.append("original"))
    copy = fast.bf16_copy(hs.generator)
    handle.remove()
    copy.register_forward_hook(lambda *a: calls.append("copy"))
    with torch.no_grad():
        copy(torch.zeros(1, hs.generator.config.style_dim, dtype=torch.bfloat16))
    assert calls == ["copy"]


def test_bench_times_the_bf16_copies_fast_mode_runs(monkeypatch, capsys):
    """`hyperstyle bench --mode fast` on a device with fast bf16 (forced here): per-stage lines for the copies."""
    from hyperstyle_core.cli import bench
    hs, we = make_tiny_models(seed=5, size=64, divisor=32)
    monkeypatch.setattr(fast, "bf16_supported", lambda device: True)
    bench.run(1, hs, we, n_iters=2, device=torch.device("cpu"), repeats=1, fast=True)
    out = capsys.readouterr().out
    assert "batch 1 fast run 1" in out
    assert "iteration 2: generator" in out and "iteration 2: hypernet" in out


def test_generator_features_are_channels_last_on_cpu_only():
    assert stylegan2.feature_memory_format(torch.zeros(1)) == torch.channels_last
    assert stylegan2.feature_memory_format(torch.zeros(1, device="meta")) == torch.contiguous_format
