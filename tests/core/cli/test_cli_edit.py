"""Editing sub-commands: ganspace, styleclip-stats, fit-direction, animate (tiny models, real official data)."""
from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image

from conftest import SHARED
from hyperstyle_core.io.checkpoints import save_model
from hyperstyle_core.cli.editing import add_edit_commands
from hyperstyle_core.io.latents import save_latent
from hyperstyle_core.testing import tiny_generator, write_tiny_models

PHOTOS = SHARED / "data" / "photos"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_edit_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


def test_ganspace_command(tmp_path):
    from hyperstyle_core.editing.ganspace import load_ganspace
    gen = save_model(tiny_generator(), tmp_path / "gen.safetensors")
    out = tmp_path / "pca.safetensors"
    assert run("ganspace", str(gen), "--out", str(out), "--samples", "3000", "--components", "8",
               "--device", "cpu") == 0
    d = load_ganspace(out)
    assert d.comp.shape == (8, 1, 32)
    gram = d.comp[:, 0] @ d.comp[:, 0].T
    assert torch.allclose(gram, torch.eye(8), atol=1e-5)


def test_styleclip_stats_command_converts_the_official_pickle(tmp_path):
    from hyperstyle_core.editing.styleclip import load_s_stats, read_s_mean_std
    src = SHARED / "data" / "official" / "editing" / "styleclip" / "S_mean_std"
    out = tmp_path / "s_stats.safetensors"
    assert run("styleclip-stats", "--s-mean-std", str(src), "--out", str(out)) == 0
    (m1, s1), (m2, s2) = read_s_mean_std(src), load_s_stats(out)
    assert len(s1) == len(s2) and all(np.array_equal(a, b) for a, b in zip(s1, s2))
    assert all(np.array_equal(a, b) for a, b in zip(m1, m2))


def test_fit_direction_and_animate_commands(tmp_path):
    from hyperstyle_core.editing.directions import load_direction
    models = tmp_path / "models"
    write_tiny_models(models)
    pos, neg = tmp_path / "pos", tmp_path / "neg"
    pos.mkdir(), neg.mkdir()
    for i, name in enumerate(["aligned_affleck.jpg", "aligned_damon.jpg", "aligned_driver.jpg",
                              "aligned_johansson.jpg", "aligned_blunt.jpg", "aligned_bezos.jpg"]):
        Image.open(PHOTOS / name).convert("RGB").resize((256, 256)).save((pos if i < 3 else neg) / f"{i}.png")
    (neg / "broken.jpg").write_text("not an image")
    out = tmp_path / "mine.safetensors"
    assert run("fit-direction", "--positive", str(pos), "--negative", str(neg), "--out", str(out),
               "--models", str(models), "--device", "cpu") == 0
    direction = load_direction(out)
    assert abs(direction.vector.norm().item() - 1) < 1e-5

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_latent(a, torch.zeros(1, 10, 32))
    save_latent(b, torch.ones(1, 10, 32))
    gif = tmp_path / "anim.gif"
    assert run("animate", "--generator", str(models / "hyperstyle_ffhq.safetensors"), "--latent-a", str(a),
               "--latent-b", str(b), "--frames", "4", "--out", str(gif), "--device", "cpu") == 0
    with Image.open(gif) as im:
        assert im.n_frames == 4
