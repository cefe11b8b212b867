"""Interpolation of latents and weight deltas; GIF/WebP/PNG writing checked by reopening the files."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from hyperstyle_core.editing.animation import (frame_weights, images_to_frames, interpolate, lerp_deltas,
                                               save_animation, save_frames)
from hyperstyle_core.deltas import GeneratorSignature, WeightDeltas
from hyperstyle_core.inversion import generate
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig

TINY = GeneratorConfig(32, style_dim=32, n_mlp=2, channel_divisor=16)
SIG = GeneratorSignature.of(TINY)


def random_deltas(layers, seed):
    g = torch.Generator().manual_seed(seed)
    return WeightDeltas({n: 0.1 * torch.randn(1, *SIG.layer_shape(n), generator=g) for n in layers}, SIG)


def moving_frames(n=6, size=16):
    """Distinct frames (a bright bar moving right) so no encoder can merge two of them."""
    frames = torch.zeros(n, size, size, 3)
    for i in range(n):
        frames[i, :, 2 * i:2 * i + 2, 0] = 1.0
        frames[i, :, :, 2] = i / n
    return frames


def no_partials(folder):
    return not any(p.name.endswith(".partial") for p in folder.iterdir())


# ----------------------------------------------------------------------------------------------- interpolation

def test_latents_endpoints_exact_and_midpoint_average():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1, 8, 32, generator=g), torch.randn(1, 8, 32, generator=g)
    latents, deltas = interpolate(a, b, None, None, n_frames=5)
    assert latents.shape == (5, 8, 32) and deltas is None
    assert torch.equal(latents[0], a[0]) and torch.equal(latents[-1], b[0])
    assert torch.allclose(latents[2], (a[0] + b[0]) / 2, atol=1e-6)
    assert torch.allclose(latents[1], 0.75 * a[0] + 0.25 * b[0], atol=1e-6)
    # Equal steps: a straight line at constant speed.
    steps = latents[1:] - latents[:-1]
    assert torch.allclose(steps, steps[:1].expand_as(steps), atol=1e-5)
    # A W code is repeated to meet a W+ code.
    w = torch.randn(1, 32, generator=g)
    mixed, _ = interpolate(w, b, n_frames=3)
    assert mixed.shape == (3, 8, 32) and torch.equal(mixed[0], w.expand(8, 32))
    assert frame_weights(4).tolist() == [0.0, 1 / 3, 2 / 3, 1.0]


def test_deltas_endpoints_exact_midpoint_average_and_missing_layers_are_zero():
    a = random_deltas(["conv1", "convs.0", "convs.1"], seed=1)
    b = random_deltas(["conv1", "convs.1", "convs.2"], seed=2)
    latents, deltas = interpolate(torch.zeros(1, 32), torch.ones(1, 32), a, b, n_frames=3)
    assert isinstance(deltas, WeightDeltas) and deltas.batch_size == 3 and latents.shape == (3, 32)
    assert list(deltas) == ["conv1", "convs.0", "convs.1", "convs.2"]
    for name in ("conv1", "convs.1"):
        assert torch.equal(deltas[name][0], a[name][0]) and torch.equal(deltas[name][2], b[name][0])
        assert torch.allclose(deltas[name][1], (a[name][0] + b[name][0]) / 2, atol=1e-7)
    # convs.0 only in a, convs.2 only in b: the other end counts as "no offset".
    assert torch.equal(deltas["convs.0"][0], a["convs.0"][0]) and deltas["convs.0"][2].abs().max() == 0
    assert torch.allclose(deltas["convs.0"][1], a["convs.0"][0] / 2)
    assert deltas["convs.2"][0].abs().max() == 0 and torch.equal(deltas["convs.2"][2], b["convs.2"][0])
    # One end without deltas at all fades them in.
    _, fade = interpolate(torch.zeros(1, 32), torch.ones(1, 32), None, b, n_frames=3)
    assert fade["conv1"][0].abs().max() == 0 and torch.allclose(fade["conv1"][1], b["conv1"][0] / 2)
    # lerp_deltas gives the same frames one at a time.
    assert torch.allclose(lerp_deltas(a, b, 0.5)["conv1"], deltas["conv1"][1:2])
    assert lerp_deltas(None, None, 0.3) is None


def test_interpolated_frames_render_between_the_endpoints():
    torch.manual_seed(0)
    generator = Generator(TINY).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(1, 8, 32, generator=g), torch.randn(1, 8, 32, generator=g)
    da, db = random_deltas(["convs.0", "convs.1"], 4), random_deltas(["convs.0", "convs.1"], 5)
    latents, deltas = interpolate(a, b, da, db, n_frames=4)
    frames = generate(generator, latents, deltas)
    assert frames.shape == (4, 3, 32, 32)
    assert torch.allclose(frames[0], generate(generator, a, da)[0], atol=1e-5)
    assert torch.allclose(frames[-1], generate(generator, b, db)[0], atol=1e-5)


def test_interpolation_errors():
    d = random_deltas(["conv1"], 0)
    with pytest.raises(ValueError, match="n_frames >= 2"):
        interpolate(torch.zeros(1, 32), torch.ones(1, 32), n_frames=1)
    with pytest.raises(ValueError, match=r"one code, W \[1, D\].*latent\[i:i\+1\]"):
        interpolate(torch.zeros(2, 32), torch.ones(2, 32))
    with pytest.raises(ValueError, match="do not match"):
        interpolate(torch.zeros(1, 32), torch.ones(1, 16))
    with pytest.raises(ValueError, match=r"deltas_b hold 2 samples.*deltas.index\(i\)"):
        interpolate(torch.zeros(1, 32), torch.ones(1, 32), d, WeightDeltas.cat([d, d]))
    other = GeneratorSignature.of(GeneratorConfig(64, style_dim=32, n_mlp=2, channel_divisor=16))
    d64 = WeightDeltas({"conv1": torch.zeros(1, *other.layer_shape("conv1"))}, other)
    with pytest.raises(ValueError, match="cannot interpolate deltas of different generators: .*32px.*64px"):
        interpolate(torch.zeros(1, 32), torch.ones(1, 32), d, d64)


# ----------------------------------------------------------------------------------------------- writing

@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation_written_with_every_frame(tmp_path, suffix):
    frames = moving_frames(6)
    path = save_animation(frames, tmp_path / f"anim{suffix}", fps=10)
    assert path == tmp_path / f"anim{suffix}" and no_partials(tmp_path)
    with Image.open(path) as im:
        assert im.format == suffix[1:].upper() and im.size == (16, 16)
        assert im.n_frames == 6 and getattr(im, "is_animated", False)
        assert im.info.get("loop") == 0
        durations = []
        for frame in ImageSequence.Iterator(im):
            frame.load()                                  # WebP sets the duration on load
            durations.append(frame.info["duration"])
        last = np.asarray(im.convert("RGB"))              # the iterator leaves the last frame current
    assert durations == [100] * 6
    # The content is the frames' content (bar position of the last frame).
    red = torch.from_numpy(last[..., 0].astype("float32")).mean(0)
    assert red[10:12].min() > 200 and red[:10].max() < 60


def test_animation_from_pil_images_and_play_once(tmp_path):
    images = [Image.new("RGB", (12, 10), (40 * i, 0, 255 - 40 * i)) for i in range(4)]
    gif = save_animation(images, tmp_path / "once.gif", fps=20, loop=False)
    with Image.open(gif) as im:
        assert im.n_frames == 4 and "loop" not in im.info and im.size == (12, 10)
    webp = save_animation(images, tmp_path / "once.WEBP", fps=20, loop=False)
    with Image.open(webp) as im:
        assert im.n_frames == 4 and im.info.get("loop") == 1
    assert no_partials(tmp_path)


def test_animation_errors(tmp_path):
    frames = moving_frames(3)
    with pytest.raises(ValueError, match=r"'anim.mp4': use a .gif or .webp file name"):
        save_animation(frames, tmp_path / "anim.mp4")
    with pytest.raises(ValueError, match=r"\[T, H, W, 3\].*images_to_frames"):
        save_animation(frames.permute(0, 3, 1, 2), tmp_path / "anim.gif")
    with pytest.raises(ValueError, match="frames differ in size"):
        save_animation([Image.new("RGB", (8, 8)), Image.new("RGB", (9, 8))], tmp_path / "anim.gif")
    with pytest.raises(ValueError, match="fps must be > 0"):
        save_animation(frames, tmp_path / "anim.gif", fps=0)
    assert list(tmp_path.iterdir()) == []


def test_save_frames_numbered_pngs(tmp_path):
    frames = moving_frames(3)
    paths = save_frames(frames, tmp_path / "out", prefix="morph")
    assert [p.name for p in paths] == ["morph_00000.png", "morph_00001.png", "morph_00002.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            pixels = torch.from_numpy(np.asarray(im.convert("RGB")).astype("float32"))
        assert torch.equal(pixels, (frames[i] * 255).round())
    with pytest.raises(ValueError, match="plain file-name prefix"):
        save_frames(frames, tmp_path, prefix="a/b")


def test_images_to_frames_maps_generator_range():
    images = torch.tensor([-1.5, -1.0, 0.0, 1.0]).view(1, 1, 1, 4).expand(2, 3, 1, 4)
    frames = images_to_frames(images)
    assert frames.shape == (2, 1, 4, 3) and frames[0, 0, :, 0].tolist() == [0.0, 0.0, 0.5, 1.0]
