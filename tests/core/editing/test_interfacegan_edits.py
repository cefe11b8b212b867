"""InterFaceGAN edits rendered with the image's deltas, against expected_edit_256 (official FaceEditor)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import OFFICIAL, SHARED
from hyperstyle_core import apply_direction, convert, generate, invert, load_direction, sweep_direction
from hyperstyle_core.editing.directions import sweep_factors
from hyperstyle_core.io.images import tensor_to_pil

TOL = 1e-4
DIRECTIONS = SHARED / "data" / "official" / "editing" / "interfacegan"


@pytest.fixture(scope="module")
def expected_edit():
    return load_file(str(OFFICIAL / "expected_edit_256.safetensors"))


@pytest.fixture(scope="module")
def inverted(models_256, expected_256):
    hs, we = models_256
    return invert(expected_256["input"], hs, we, n_iters=3)


@pytest.fixture(scope="module")
def converted_directions(tmp_path_factory):
    out = tmp_path_factory.mktemp("directions")
    return {name: convert(DIRECTIONS / f"{name}.pt", out) for name in ("age", "smile", "pose")}


@pytest.mark.parametrize("name", ["age", "smile"])
@pytest.mark.parametrize("factor", [-2, 3])
def test_interfacegan_edit_matches_official(name, factor, inverted, models_256, expected_edit, converted_directions):
    hs, _ = models_256
    direction = load_direction(converted_directions[name])
    assert torch.equal(direction.vector, expected_edit[f"direction.{name}"])
    key = f"{name}.f{factor:+d}" if factor > 0 else f"{name}.f{factor}"
    edited = apply_direction(inverted.latent, direction, factor)
    assert (edited.cpu() - expected_edit[f"{key}.latent"]).abs().max().item() < TOL
    image = generate(hs.generator, edited, inverted.deltas)
    assert (image.cpu() - expected_edit[f"{key}.image"]).abs().max().item() < TOL
    ours_uint8 = np.asarray(tensor_to_pil(image[0])).astype(int)
    # tensor2im truncates after scaling: a 1e-5 difference can flip a pixel by one level, never more.
    assert np.abs(ours_uint8 - expected_edit[f"{key}.image_uint8"].numpy().astype(int)).max() <= 1


def test_official_pt_directions_load_directly_and_pose_is_w_plus():
    age = load_direction(DIRECTIONS / "age.pt")
    assert age.vector.shape == (1, 512)
    pose = load_direction(DIRECTIONS / "pose.pt")   # saved on a CUDA device upstream
    assert pose.vector.shape == (1, 18, 512) and pose.n_latent == 18
    with pytest.raises(ValueError, match="W\\+ direction for 18 style layers.*1024px"):
        apply_direction(torch.zeros(1, 14, 512), pose, 1.0)


def test_sweep_is_sample_major(inverted, converted_directions):
    direction = load_direction(converted_directions["smile"])
    latents = torch.cat([inverted.latent, inverted.latent + 1])
    swept = sweep_direction(latents, direction, [-1.0, 0.0, 2.0])
    assert swept.shape == (6, 14, 512)
    assert torch.allclose(swept[1], latents[0]) and torch.allclose(swept[4], latents[1])
    assert torch.allclose(swept[5], apply_direction(latents[1:], direction, 2.0)[0])


def test_sweep_factors_run_from_start_to_end_exactly():
    assert sweep_factors(-3.0, 3.0, 5) == [-3.0, -1.5, 0.0, 1.5, 3.0]
    assert sweep_factors(0.1, 0.7, 7)[-1] == 0.7 and sweep_factors(2.0, 5.0, 1) == [2.0]
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="steps must be a whole number of at least 1"):
            sweep_factors(0.0, 1.0, bad)
