"""Editing-suite nodes: GANSpace (load official, compute, edit), fitted directions, interpolation, animations."""
from __future__ import annotations

import shutil

import pytest
import torch
from PIL import Image

from conftest import SHARED


@pytest.fixture()
def nodes(pack, comfy_env):
    return pack.NODE_CLASS_MAPPINGS


def test_official_cars_pca_loads_and_edits(nodes, models_dir):
    shutil.copy(SHARED / "data" / "official" / "editing" / "ganspace" / "cars_pca.pt", models_dir / "cars_pca.pt")
    (ganspace,) = nodes["HyperStyleLoadGanSpace"]().execute("cars_pca.pt")
    latent = torch.randn(2, 16, 512)
    (edited,) = nodes["HyperStyleGanSpaceEdit"]().execute(latent, ganspace, 16, 3, 6, 25.0)
    changed = (edited - latent).abs().amax(dim=(0, 2)) > 0
    assert changed.tolist() == [i in (3, 4, 5) for i in range(16)]


def test_compute_ganspace_and_edit_moves_the_image(nodes, pack, comfy_env):
    from hyperstyle_pack.hyperstyle_core.testing import tiny_generator
    generator = tiny_generator()
    (ganspace,) = nodes["HyperStyleComputeGanSpace"]().execute(generator, n_samples=4000, n_components=8,
                                                               filename_prefix="hyperstyle/pca")
    assert (comfy_env / "output" / "hyperstyle" / "pca_00001_.safetensors").exists()
    latent = generator.mapping(torch.randn(1, 32))[:, None].repeat(1, generator.n_latent, 1)
    (edited,) = nodes["HyperStyleGanSpaceEdit"]().execute(latent, ganspace, 0, 0, generator.n_latent, 4.0)
    (a,) = nodes["HyperStyleGenerate"]().execute(generator, latent)
    (b,) = nodes["HyperStyleGenerate"]().execute(generator, edited)
    assert (a - b).abs().mean() > 1e-3


def test_fit_direction_node(nodes, comfy_env):
    torch.manual_seed(0)
    normal = torch.nn.functional.normalize(torch.randn(32), dim=0)
    latents = torch.randn(400, 32)
    labels = (latents @ normal > 0).int().tolist()
    (direction,) = nodes["HyperStyleFitDirection"]().execute(latents, ",".join(map(str, labels)), "svm",
                                                             "hyperstyle/mine")
    cosine = torch.nn.functional.cosine_similarity(direction.vector.flatten(), normal, dim=0)
    assert cosine > 0.9
    assert (comfy_env / "output" / "hyperstyle" / "mine_00001_.safetensors").exists()
    with pytest.raises(ValueError, match="labels must be 0/1 numbers"):
        nodes["HyperStyleFitDirection"]().execute(latents, "yes,no", "svm", "")


def test_interpolate_and_save_animation(nodes, comfy_env):
    a, b = torch.zeros(1, 8, 32), torch.ones(2, 8, 32)
    latents, deltas = nodes["HyperStyleInterpolate"]().execute(a, b, frames=5, sample_b=1)
    assert latents.shape == (5, 8, 32) and deltas is None
    assert torch.allclose(latents[2], torch.full((8, 32), 0.5))
    with pytest.raises(ValueError, match="sample index 3 does not exist"):
        nodes["HyperStyleInterpolate"]().execute(a, b, frames=5, sample_b=3)
    frames = torch.rand(4, 32, 32, 3)
    out = nodes["HyperStyleSaveAnimation"]().execute(frames, "hyperstyle/anim", "gif", 10.0, True)
    path = out["result"][0]
    with Image.open(path) as im:
        assert im.n_frames == 4
    folder = nodes["HyperStyleSaveAnimation"]().execute(frames, "hyperstyle/anim", "png frames")["result"][0]
    assert len(list((comfy_env / "output" / "hyperstyle").glob("anim_00002_/frame_*.png"))) == 4, folder


def test_styleclip_nodes_on_a_tiny_generator_and_clip(nodes, pack, models_dir, comfy_env):
    """Compute fs3 for a generator, then edit by text: the deltas stay applied and alpha 0 is the plain render."""
    from safetensors.torch import save_file
    from hyperstyle_pack.hyperstyle_core.editing import styleclip as sc
    from hyperstyle_pack.hyperstyle_core.deltas import GeneratorSignature, WeightDeltas
    from hyperstyle_pack.hyperstyle_core.testing import tiny_clip, tiny_generator

    clip_model = tiny_clip()
    save_file({k: v.contiguous() for k, v in clip_model.state_dict().items()},
              str(models_dir / "tiny_clip.safetensors"))
    generator = tiny_generator(size=32)
    means, stds = sc.compute_s_stats(generator, n_samples=2000)
    sc.save_s_stats(models_dir / "tiny_s_stats.safetensors", means, stds, generator.layer_names)
    path = nodes["HyperStyleComputeStyleCLIPDirections"]().execute(generator, "tiny_clip.safetensors", 4,
                                                                   "fs3_tiny")["result"][0]
    shutil.copy(path, models_dir / "fs3_tiny.safetensors")
    latent = generator.mapping(torch.randn(2, 32))
    sig = GeneratorSignature.of(generator)
    name, o, i, k = sig.layers[2]
    deltas = WeightDeltas({name: 0.2 * torch.randn(2, o, i, k, k)}, sig)
    args = (generator, latent, "tiny_clip.safetensors", "tiny_s_stats.safetensors", "fs3_tiny.safetensors",
            "face", "smiling face")
    (edited,) = nodes["HyperStyleStyleCLIPEdit"]().execute(*args, alpha=3.0, beta=0.0, deltas=deltas)
    (same,) = nodes["HyperStyleStyleCLIPEdit"]().execute(*args, alpha=0.0, beta=0.0, deltas=deltas)
    (plain,) = nodes["HyperStyleGenerate"]().execute(generator, latent, deltas=deltas)
    assert edited.shape == (2, 32, 32, 3)
    assert torch.allclose(same, plain, atol=1e-5)
    assert (edited - plain).abs().mean() > 1e-4
