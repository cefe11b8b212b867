"""ReStyle-e4e encoding and the official domain-adaptation recipe against expected_domain_256.safetensors."""
from __future__ import annotations

import pytest
from safetensors.torch import load_file

from conftest import OFFICIAL, TEST_DEVICE
from hyperstyle_core import TOONIFY_LAYERS, generate, invert, load, restyle_e4e_invert

TOL = 1e-4


@pytest.fixture(scope="module")
def expected_domain():
    return load_file(str(OFFICIAL / "expected_domain_256.safetensors"))


@pytest.fixture(scope="module")
def restyle_result(converted, expected_domain):
    restyle = load(converted("restyle_e4e_ffhq_256"), device=TEST_DEVICE, expect="restyle_e4e")
    return restyle_e4e_invert(expected_domain["input"], restyle, n_iters=2)


def _err(a, b):
    assert a.shape == b.shape, f"{list(a.shape)} != {list(b.shape)}"
    return (a.cpu() - b.cpu()).abs().max().item()


@pytest.mark.slow                  # converts the 256-px official-width model
def test_restyle_average_image(restyle_result, expected_domain):
    assert _err(restyle_result.average_image[0], expected_domain["restyle.avg_image"]) < TOL


@pytest.mark.parametrize("step", [1, 2])
def test_restyle_steps(restyle_result, expected_domain, step):
    assert _err(restyle_result.latents[step - 1], expected_domain[f"restyle.iter{step}.latent"]) < TOL
    assert _err(restyle_result.images[step - 1], expected_domain[f"restyle.iter{step}.image"]) < TOL


def test_domain_adaptation_recipe(restyle_result, expected_domain, models_256, converted):
    """ReStyle W+ latent + FFHQ HyperStyle deltas restricted to the Toonify layers, rendered by the fine-tuned G."""
    hs, we = models_256
    toonify = load(converted("stylegan2_256", salt="toonify", name="toonify_256"), device=TEST_DEVICE,
                   expect="stylegan2")
    deltas = invert(expected_domain["input"], hs, we, n_iters=3).deltas.select(TOONIFY_LAYERS)
    assert deltas.layer_indices == expected_domain["delta_layers_kept"].tolist()
    out = generate(toonify, restyle_result.latent, deltas, randomize_noise=False)
    assert _err(out, expected_domain["output.image"]) < TOL
    plain = generate(toonify, restyle_result.latent)
    assert _err(plain, expected_domain["output.no_deltas.image"]) < TOL


@pytest.mark.parametrize("n_iters", [True, 0, 1.5])
def test_restyle_refuses_what_refine_refuses(converted, expected_domain, n_iters):
    """restyle_e4e_invert(n_iters=True) used to run one step; it is refused with refine's message."""
    restyle = load(converted("restyle_e4e_ffhq_256"), device=TEST_DEVICE, expect="restyle_e4e")
    with pytest.raises(ValueError, match="n_iters must be a positive integer"):
        restyle_e4e_invert(expected_domain["input"], restyle, n_iters=n_iters)
