"""GANSpace: PCA of W on a tiny generator, the official cars editor semantics, file round trips."""
from __future__ import annotations

import pytest
import torch

from conftest import SHARED
from hyperstyle_core.editing.ganspace import (CARS_PRESET_NAMES, CARS_PRESETS, GanSpaceDirections, compute_ganspace,
                                      ganspace_coordinate, ganspace_edit, ganspace_sweep, load_ganspace,
                                      save_ganspace)
from hyperstyle_core.inversion import generate
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig

CARS_PCA = SHARED / "data" / "official" / "editing" / "ganspace" / "cars_pca.pt"
needs_cars_pca = pytest.mark.skipif(not CARS_PCA.exists(), reason=f"{CARS_PCA} not present")


@pytest.fixture(scope="module")
def tiny_generator():
    torch.manual_seed(0)
    return Generator(GeneratorConfig(32, style_dim=32, n_mlp=2, channel_divisor=16)).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def pca(tiny_generator):
    return compute_ganspace(tiny_generator, n_samples=20_000, seed=1, batch_size=3_000)


@pytest.fixture(scope="module")
def cars_pca():
    return load_ganspace(CARS_PCA)


def fresh_w(generator, n, seed):
    z = torch.randn(n, generator.config.style_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return generator.mapping(z)


def official_cars_edit(latent, gs, pca_idx, start, end, strength):
    """The official CarsEditor._get_delta + apply_ganspace arithmetic for one sample [n, 512], restated literally."""
    w_centered = latent - gs["mean"]
    w_coord = torch.sum(w_centered[0].reshape(-1) * gs["comp"][pca_idx].reshape(-1)) / gs["std"][pca_idx]
    delta = (strength - w_coord) * gs["comp"][pca_idx] * gs["std"][pca_idx]
    delta_padded = torch.zeros(latent.shape)
    delta_padded[start:end] += delta.repeat(end - start, 1)
    return latent + delta_padded


# ----------------------------------------------------------------------------------------------- compute_ganspace

def test_components_orthonormal_sorted_and_std_matches_fresh_samples(tiny_generator, pca):
    d = tiny_generator.config.style_dim
    assert pca.mean.shape == (1, d) and pca.std.shape == (d,) and pca.comp.shape == (d, 1, d)
    comp = pca.comp[:, 0].double()
    assert torch.allclose(comp @ comp.T, torch.eye(d, dtype=torch.float64), atol=1e-5)
    assert (pca.std[1:] <= pca.std[:-1]).all() and (pca.std > 0).all()
    assert pca.std[0] > 3 * pca.std[-1]          # a real spectrum, not isotropic noise
    # Samples the PCA never saw: their spread along each component is that component's std, their mean the mean.
    w = fresh_w(tiny_generator, 20_000, seed=123).double()
    proj = (w - pca.mean.double()) @ comp.T
    assert torch.allclose(proj.std(0), pca.std.double(), rtol=0.05)
    assert (proj.mean(0).abs() < 0.05 * pca.std[0]).all()
    # The components diagonalise the covariance of fresh samples (off-diagonal correlation small).
    corr = torch.corrcoef(proj.T)
    assert (corr - torch.eye(d, dtype=torch.float64)).abs().max() < 0.05


def test_compute_is_deterministic_given_seed(tiny_generator, pca):
    again = compute_ganspace(tiny_generator, n_samples=20_000, seed=1, batch_size=3_000)
    assert torch.equal(again.comp, pca.comp) and torch.equal(again.std, pca.std) and torch.equal(again.mean, pca.mean)
    other = compute_ganspace(tiny_generator, n_samples=20_000, seed=2, batch_size=3_000)
    assert not torch.equal(other.mean, pca.mean)
    assert torch.allclose(other.std, pca.std, rtol=0.05)
    few = compute_ganspace(tiny_generator, n_samples=500, n_components=4, seed=1)
    assert few.comp.shape == (4, 1, 32) and few.provenance["n_samples"] == "500"
    with pytest.raises(ValueError, match="n_components must be between 1 and the style dim 32"):
        compute_ganspace(tiny_generator, n_samples=100, n_components=33)


# ----------------------------------------------------------------------------------------------- editing

def test_edit_changes_image_and_current_coordinate_is_a_no_op(tiny_generator, pca):
    latent = tiny_generator.broadcast_latent(fresh_w(tiny_generator, 2, seed=5))       # [2, 8, 32]
    n = latent.shape[1]
    coord = ganspace_coordinate(latent, pca, 0)
    # Strength = the sample's own coordinate: delta (strength - w_coord) is zero.
    same = ganspace_edit(latent[:1], pca, 0, 0, n, coord[0].item())
    assert (same - latent[:1]).abs().max() < 1e-5
    assert (generate(tiny_generator, same) - generate(tiny_generator, latent[:1])).abs().max() < 1e-4
    # Three standard deviations away along the largest component: a clearly different image.
    edited = ganspace_edit(latent, pca, 0, 0, n, 3.0)
    before, after = generate(tiny_generator, latent), generate(tiny_generator, edited)
    assert ((after - before).abs().mean(dim=(1, 2, 3)) > 0.1).all()
    # Every entry of a repeated-W code now sits at the target coordinate; each sample moved by its own amount.
    for i in range(n):
        assert torch.allclose(ganspace_coordinate(edited[:, i:i + 1], pca, 0), torch.tensor([3.0, 3.0]), atol=1e-4)
    shift = (edited - latent)[:, 0]
    assert torch.allclose(shift.norm(dim=1), (3.0 - coord).abs() * pca.std[0], rtol=1e-4)
    assert latent.shape == (2, n, 32)            # input untouched
    assert torch.equal(latent, tiny_generator.broadcast_latent(fresh_w(tiny_generator, 2, seed=5)))


def test_edit_errors_say_what_to_do(pca):
    with pytest.raises(ValueError, match=r"W\+ latents \[B, n_latent, D\].*broadcast_latent"):
        ganspace_edit(torch.zeros(1, 32), pca, 0, 0, 4, 1.0)
    with pytest.raises(ValueError, match="component 40 does not exist.*0..31"):
        ganspace_edit(torch.zeros(1, 8, 32), pca, 40, 0, 4, 1.0)
    with pytest.raises(ValueError, match=r"layer range 3:9 is not inside the latent's 8 W\+ entries"):
        ganspace_edit(torch.zeros(1, 8, 32), pca, 0, 3, 9, 1.0)
    with pytest.raises(ValueError, match="range 4:4"):
        ganspace_edit(torch.zeros(1, 8, 32), pca, 0, 4, 4, 1.0)
    with pytest.raises(ValueError, match="dim 16 .* for dim 32"):
        ganspace_edit(torch.zeros(1, 8, 16), pca, 0, 0, 4, 1.0)


# ----------------------------------------------------------------------------------------------- official cars PCA

def test_cars_presets_are_the_official_list():
    assert CARS_PRESETS == [(0, 0, 5, 2), (0, 0, 5, -2), (16, 3, 6, 25), (22, 9, 11, -8), (41, 9, 11, -18)]
    assert len(CARS_PRESET_NAMES) == len(CARS_PRESETS)


@needs_cars_pca
def test_official_cars_pca_loads(cars_pca):
    assert cars_pca.mean.shape == (1, 512) and cars_pca.std.shape == (80,) and cars_pca.comp.shape == (80, 1, 512)
    assert cars_pca.n_components == 80 and cars_pca.style_dim == 512 and cars_pca.name == "cars_pca"
    comp = cars_pca.comp[:, 0].double()
    assert torch.allclose(comp @ comp.T, torch.eye(80, dtype=torch.float64), atol=1e-5)
    # Largest first, but not strictly sorted upstream (std[11] 1.879 < std[12] 1.910): kept as stored.
    assert cars_pca.std.argmax() == 0 and (cars_pca.std[1:] <= 1.05 * cars_pca.std[:-1]).all()
    assert not (cars_pca.std[1:] <= cars_pca.std[:-1]).all()


@needs_cars_pca
@pytest.mark.parametrize("preset", CARS_PRESETS)
def test_cars_preset_edits_only_layers_start_to_end_as_official(cars_pca, preset):
    component, start, end, strength = preset
    gen = torch.Generator().manual_seed(component)
    # A W+ code whose entries differ (as ReStyle's do): the coordinate must come from entry 0 only.
    latent = cars_pca.mean[None] + 3 * torch.randn(2, 16, 512, generator=gen)
    edited = ganspace_edit(latent, cars_pca, component, start, end, strength)
    assert edited.shape == latent.shape and edited.dtype == latent.dtype
    outside = [i for i in range(16) if not start <= i < end]
    assert torch.equal(edited[:, outside], latent[:, outside])
    assert ((edited[:, start:end] - latent[:, start:end]).abs().amax(dim=-1) > 1e-3).all()
    # All edited entries move by the same vector, along the component.
    moved = edited[:, start:end] - latent[:, start:end]
    assert torch.allclose(moved, moved[:, :1].expand_as(moved), atol=1e-5)
    direction = cars_pca.comp[component, 0]
    assert torch.allclose(torch.nn.functional.cosine_similarity(moved[:, 0], direction[None]).abs(),
                          torch.ones(2), atol=1e-5)
    gs = {"mean": cars_pca.mean, "std": cars_pca.std, "comp": cars_pca.comp}
    for b in range(2):
        reference = official_cars_edit(latent[b], gs, component, start, end, strength)
        assert (edited[b] - reference).abs().max() < 1e-5


@needs_cars_pca
def test_sweep_is_sample_major_with_the_original_first(cars_pca):
    latent = cars_pca.mean[None].repeat(2, 16, 1) + torch.randn(2, 16, 512, generator=torch.Generator().manual_seed(0))
    sweep = ganspace_sweep(latent, cars_pca)
    assert sweep.shape == (2 * 6, 16, 512)
    for b in range(2):
        assert torch.equal(sweep[6 * b], latent[b])
        for j, preset in enumerate(CARS_PRESETS):
            assert torch.equal(sweep[6 * b + 1 + j], ganspace_edit(latent[b:b + 1], cars_pca, *preset)[0])
    assert ganspace_sweep(latent, cars_pca, [(0, 0, 5, 2)], include_original=False).shape == (2, 16, 512)


# ----------------------------------------------------------------------------------------------- files

def test_save_load_round_trip(tmp_path, pca):
    path = save_ganspace(pca, tmp_path / "tiny_pca.safetensors")
    loaded = load_ganspace(path)
    assert torch.equal(loaded.mean, pca.mean) and torch.equal(loaded.std, pca.std)
    assert torch.equal(loaded.comp, pca.comp)
    assert loaded.provenance["seed"] == "1" and loaded.provenance["n_samples"] == "20000"
    assert loaded.name == "tiny_pca"
    assert [p.name for p in tmp_path.iterdir()] == ["tiny_pca.safetensors"]      # no *.partial left
    with pytest.raises(ValueError, match="name the file 'x.safetensors'"):
        save_ganspace(pca, tmp_path / "x.pt")


@needs_cars_pca
def test_official_pt_round_trips_through_safetensors(tmp_path, cars_pca):
    loaded = load_ganspace(save_ganspace(cars_pca, tmp_path / "cars_pca.safetensors"))
    assert torch.equal(loaded.comp, cars_pca.comp) and torch.equal(loaded.std, cars_pca.std)
    assert loaded.provenance["source_name"] == "cars_pca.pt"


def test_load_rejects_other_files(tmp_path):
    from hyperstyle_core.editing.directions import LatentDirection
    from hyperstyle_core.io.directions import save_direction
    direction = save_direction(LatentDirection(torch.ones(1, 32) / 32 ** 0.5, "d"), tmp_path / "d.safetensors")
    with pytest.raises(ValueError, match="d.safetensors is not a GANSpace file .*'direction'"):
        load_ganspace(direction)
    with pytest.raises(FileNotFoundError, match="cars_pca.pt"):
        load_ganspace(tmp_path / "missing.pt")
    torch.save({"mean": torch.zeros(1, 8)}, tmp_path / "partial.pt")
    with pytest.raises(ValueError, match="lacks std, comp"):
        load_ganspace(tmp_path / "partial.pt")
    with pytest.raises(ValueError, match=r"expected mean \[1, D\], std \[K\], comp \[K, 1, D\]"):
        GanSpaceDirections(torch.zeros(1, 8), torch.ones(3), torch.zeros(3, 1, 7))
