"""Fast mode end to end: previews, bf16 copies or int8 products as the plan says, the quality it costs (logged,
not timed), and its switches in the node, the command line and the benchmark."""
from __future__ import annotations

import importlib
import logging

import pytest
import torch

from hyperstyle_core import invert
from hyperstyle_core.nn.engine import inference, low_precision, plan as plan_module
from hyperstyle_core.testing import make_tiny_models

log = logging.getLogger(__name__)     # measurements, shown with --log-cli-level=INFO


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2)."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * torch.log10(torch.tensor(4.0 / mse)).item()


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
    """fast=True on a 512-px model: previews at 256 px, a full final render, quality cost logged (not timed)."""
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
    monkeypatch.setattr(plan_module, "bf16_supported", lambda device: True)
    packed = []
    monkeypatch.setattr(inference, "int8_products", lambda hypernet: packed.append(hypernet))
    quick = invert(images, hs, we, n_iters=2, fast=True)
    assert packed == []                                     # bf16 copies instead of int8 products
    assert quick.final.dtype == torch.float32 and all(d.dtype == torch.float32 for d in quick.deltas.values())
    assert _psnr(quick.final, exact.final) > 20 and not torch.equal(quick.final, exact.final)
    generator_copy, hypernet_copy = low_precision.bf16_copy(hs.generator), low_precision.bf16_copy(hs.hypernet)
    assert generator_copy is low_precision.bf16_copy(hs.generator)  # cast once, kept
    assert all(p.dtype == torch.bfloat16 for p in hypernet_copy.parameters() if p.is_floating_point())
    assert all(p.dtype == torch.float32 for p in hs.hypernet.parameters())      # the model itself is untouched
    with torch.no_grad():
        hs.generator.conv1.conv.weight.mul_(2)            # weights edited in place: a new copy
    assert low_precision.bf16_copy(hs.generator) is not generator_copy
    copy = low_precision.bf16_copy(hs.generator)
    assert torch.equal(copy.conv1.conv.weight, hs.generator.conv1.conv.weight.bfloat16())


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


def test_bench_times_the_bf16_copies_fast_mode_runs(monkeypatch, capsys):
    """`hyperstyle bench --mode fast` on a device with fast bf16 (forced here): per-stage lines for the copies."""
    from hyperstyle_core.cli import bench
    hs, we = make_tiny_models(seed=5, size=64, divisor=32)
    monkeypatch.setattr(plan_module, "bf16_supported", lambda device: True)
    bench.run(1, hs, we, n_iters=2, device=torch.device("cpu"), repeats=1, fast=True)
    out = capsys.readouterr().out
    assert "batch 1 fast run 1" in out
    assert "iteration 2: generator" in out and "iteration 2: hypernet" in out
