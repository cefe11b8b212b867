"""Parity with the official implementation on recipe weights (expected_256.safetensors), at 1e-4 max abs error."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core import generate, invert, WeightDeltas

TOL = 1e-4
DELTA_LAYERS = (11, 17, 18)  # the layers the fixture stores: convs.6 (shared), convs.10, convs.11


@pytest.fixture(scope="module")
def inversion(models_256, expected_256):
    hs, we = models_256
    recorded = {}

    def record(i, image, deltas):
        assert isinstance(deltas, WeightDeltas)
        for idx in DELTA_LAYERS:
            recorded[f"iter{i}.delta.{idx}"] = deltas[deltas.signature.layer_name(idx)].clone()

    result = invert(expected_256["input"], hs, we, n_iters=3, on_iteration=record)
    return result, recorded


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"{list(a.shape)} != {list(b.shape)}"
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


def test_w_codes_match(inversion, expected_256, models_256):
    result, _ = inversion
    hs, _ = models_256
    assert _max_err(hs.latent_avg, expected_256["latent_avg"]) == 0.0
    assert _max_err(result.latent - hs.latent_avg, expected_256["w_encoder_out"]) < TOL
    assert _max_err(result.latent, expected_256["w_codes"]) < TOL


def test_initial_reconstruction_matches(inversion, expected_256):
    result, _ = inversion
    assert _max_err(result.initial, expected_256["y_hat_init"]) < TOL


@pytest.mark.parametrize("it", [1, 2, 3])
def test_every_iteration_image_matches(inversion, expected_256, it):
    result, _ = inversion
    assert len(result.images) == 3
    assert _max_err(result.images[it - 1], expected_256[f"iter{it}.image"]) < TOL


@pytest.mark.parametrize("it", [1, 2, 3])
@pytest.mark.parametrize("layer", DELTA_LAYERS)
def test_every_iteration_deltas_match(inversion, expected_256, it, layer):
    _, recorded = inversion
    key = f"iter{it}.delta.{layer}"
    assert _max_err(recorded[key], expected_256[key]) < TOL


def test_final_deltas_are_the_last_iteration(inversion, expected_256):
    result, _ = inversion
    for layer in DELTA_LAYERS:
        name = result.deltas.signature.layer_name(layer)
        assert _max_err(result.deltas[name], expected_256[f"iter3.delta.{layer}"]) < TOL
    # Layers the official 256 model tunes (the default list cut at 20 layers).
    assert result.deltas.layer_indices == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]


def test_all_delta_layers_match_fixture_statistics(models_256, expected_256):
    """expected_256.json records sum, sum of squares and abs-max of all 20 delta entries per iteration.

    The bounds are the ones a max abs error below TOL implies: |d sum| <= TOL * n, |d absmax| <= TOL,
    |d sum_sq| <= 2 * TOL * sum|x| + n * TOL^2.
    """
    import json
    from conftest import OFFICIAL
    stats = json.loads((OFFICIAL / "expected_256.json").read_text())["iterations"]
    hs, we = models_256
    seen = {}
    invert(expected_256["input"], hs, we, n_iters=3,
           on_iteration=lambda i, image, deltas: seen.__setitem__(i, {k: v.double() for k, v in deltas.items()}))
    checked = 0
    for entry in stats:
        ours = seen[entry["iteration"]]
        for key, ref in entry["deltas"].items():
            name = hs.generator.layer_names[int(key)]
            if ref is None:
                assert name not in ours
                continue
            t = ours[name]
            n = t.numel()
            assert abs(t.abs().max().item() - ref["abs_max"]) <= TOL
            assert abs(t.sum().item() - ref["sum"]) <= TOL * n
            assert abs(t.pow(2).sum().item() - ref["sum_sq"]) <= 2 * TOL * t.abs().sum().item() + n * TOL ** 2
            checked += 1
    assert checked == 3 * 13


def test_generate_with_final_deltas_reproduces_last_image(inversion, models_256, expected_256):
    result, _ = inversion
    hs, _ = models_256
    image = generate(hs.generator, result.latent, result.deltas)
    assert _max_err(image, expected_256["iter3.image"]) < TOL
    # Strength 0 is the plain generator: the initial reconstruction.
    assert _max_err(generate(hs.generator, result.latent, result.deltas, strength=0.0),
                    expected_256["y_hat_init"]) < TOL
