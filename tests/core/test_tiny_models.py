"""Tiny models (real architectures, reduced widths) save, load and invert quickly."""
from __future__ import annotations

import time

import torch

from hyperstyle_core import invert, load
from hyperstyle_core.testing import write_tiny_models


def test_tiny_models_round_trip_and_invert(tmp_path):
    hs_path, we_path = write_tiny_models(tmp_path)
    hs = load(hs_path, device="cpu", expect="hyperstyle")
    we = load(we_path, device="cpu", expect="w_encoder")
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    t0 = time.perf_counter()
    result = invert(x, hs, we, n_iters=3)
    elapsed = time.perf_counter() - t0
    assert result.latent.shape == (2, hs.generator.n_latent, 32)
    assert result.images[-1].shape == (2, 3, 64, 64)
    assert result.deltas.layer_indices == [0, 2, 3, 5, 6, 8, 9, 11, 12]
    assert all(torch.isfinite(d).all() for d in result.deltas.values())
    assert (result.images[-1] - result.initial).abs().max() > 0      # deltas do something
    assert elapsed < 10, f"tiny inversion took {elapsed:.1f} s"
