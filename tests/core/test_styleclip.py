"""StyleCLIP global directions against expected_stylespace_256 (official get_delta_s, S-space renders), safe readers
of S_mean_std and CLIP files, and channel directions on a tiny generator with a tiny random CLIP."""
from __future__ import annotations

import math
import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import OFFICIAL, SHARED
from hyperstyle_core import invert
from hyperstyle_core.editing import styleclip as sc
from hyperstyle_core.io.formats import read_safetensors_metadata
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig

TOL = 1e-4
STYLECLIP_DATA = SHARED / "data" / "official" / "editing" / "styleclip"
S_MEAN_STD = STYLECLIP_DATA / "S_mean_std"
TEMPLATES = STYLECLIP_DATA / "templates.txt"
NEUTRAL, TARGET = "face with hair", "face with long hair"
BETAS = (0.11, 0.13)


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


@pytest.fixture(scope="module")
def expected():
    return load_file(str(OFFICIAL / "expected_stylespace_256.safetensors"))


@pytest.fixture(scope="module")
def s_stats():
    return sc.read_s_mean_std(S_MEAN_STD)


# ---------------------------------------------------------------------------------- fakes the fixture describes

class FakeTextEncoder:
    """encode_text(prompts) -> recipe-uniform [512] vectors seeded by crc32(prompt.strip()), as in the fixture."""

    def __init__(self, recipe):
        self.recipe = recipe

    def embed(self, prompt: str) -> torch.Tensor:
        return self.recipe.make_tensor({"key": prompt.strip(), "shape": [512], "rule": "uniform", "scale": 1.0})

    def encode_text(self, prompts):
        return torch.stack([self.embed(p) for p in prompts])


def fake_tokenize(prompts):
    return list(prompts)  # the fixture's clip.tokenize returns the prompt strings


@pytest.fixture(scope="module")
def fake_delta_i_c(recipe):
    entry = {"key": "styleclip.fake_delta_i_c", "shape": [6048, 512], "rule": "uniform", "scale": 1 / math.sqrt(512)}
    return recipe.make_tensor(entry)


# ---------------------------------------------------------------------------------- S statistics

def test_s_mean_std_reader_and_safetensors_round_trip(s_stats, expected, tmp_path):
    means, stds = s_stats
    assert len(means) == len(stds) == 26
    assert [a.size for a in stds] == [512] * 15 + [256] * 3 + [128] * 3 + [64] * 3 + [32] * 2
    assert all(a.dtype == np.float32 for a in means + stds)
    # The fixture's random S direction: float32((2u-1)*sqrt(3) * 0.1*s_std[c]) from one RandomState(1234).
    rs = np.random.RandomState(1234)
    for c, name in enumerate(sc.official_layer_names(20)):
        dim = expected[f"s.{c:02d}.{name}"].shape[2]
        u = (2 * rs.random_sample(dim) - 1) * math.sqrt(3)
        rebuilt = torch.from_numpy((u * (0.1 * stds[c].astype(np.float64))).astype(np.float32))
        assert torch.equal(rebuilt.view(1, 1, -1, 1, 1), expected[f"direction.{c:02d}.{name}"])

    path = sc.save_s_stats(tmp_path / "ffhq_s_stats.safetensors", means, stds, extra_metadata={"source": "S_mean_std"})
    meta = read_safetensors_metadata(path)
    assert meta["format"] == "hyperstyle.styleclip_s_stats" and meta["source"] == "S_mean_std"
    m2, s2 = sc.load_s_stats(path)
    assert all(np.array_equal(a, b) for a, b in zip(means + stds, m2 + s2))
    with pytest.raises(ValueError, match="read the official pickle with read_s_mean_std"):
        sc.load_s_stats(S_MEAN_STD.with_name("templates.txt"))


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_s_stats_pickle_protocols(protocol, tmp_path):
    means = [np.arange(3, dtype=np.float32), np.ones(2, np.float32)]
    stds = [np.full(3, 0.5, np.float32), np.float32(2) * np.ones(2, np.float32)]
    path = tmp_path / "S_mean_std"
    path.write_bytes(pickle.dumps([means, stds], protocol=protocol))
    m, s = sc.read_s_mean_std(path)
    assert all(np.array_equal(a, b) for a, b in zip(means + stds, m + s))


class _Reduce:
    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.print", "builtins.eval"])
def test_malicious_s_stats_pickle_is_refused(payload, tmp_path, capfd):
    marker = tmp_path / "pwned"
    func = {"os.system": os.system, "builtins.print": print, "builtins.eval": eval}[payload]
    arg = {"os.system": f"touch {marker}", "builtins.print": "PWNED",
           "builtins.eval": f"open({str(marker)!r}, 'w')"}[payload]
    path = tmp_path / "S_mean_std"
    path.write_bytes(pickle.dumps(([np.zeros(3, np.float32)], [_Reduce(func, (arg,))]), protocol=3))
    with pytest.raises(pickle.UnpicklingError, match=r"refused to load .*only contain numpy arrays"):
        sc.read_s_mean_std(path)
    assert not marker.exists()
    assert "PWNED" not in capfd.readouterr().out


def test_s_stats_pickle_with_wrong_content(tmp_path):
    path = tmp_path / "S_mean_std"
    path.write_bytes(pickle.dumps({"mean": np.zeros(3)}))
    with pytest.raises(ValueError, match=r"expected the pair \(means, stds\)"):
        sc.read_s_mean_std(path)
    path.write_bytes(pickle.dumps(([np.zeros(3, np.float32)], [np.zeros(4, np.float32)])))
    with pytest.raises(ValueError, match="means and stds differ"):
        sc.read_s_mean_std(path)
    with pytest.raises(FileNotFoundError, match="S_mean_std of the HyperStyle repository"):
        sc.read_s_mean_std(tmp_path / "missing")


# ---------------------------------------------------------------------------------- layout

def test_official_layout_and_conversions():
    names = sc.official_layer_names(26)
    assert names[:5] == ["conv1", "to_rgb1", "convs.0", "convs.1", "to_rgbs.0"] and names[-1] == "to_rgbs.7"
    assert names == Generator(GeneratorConfig(1024, channel_divisor=64)).layer_names
    edit = sc.styleclip_edit_layers(names)
    assert [names.index(n) for n in edit] == [0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15]
    with pytest.raises(ValueError, match="3\\*log2\\(size\\)-4 entries"):
        sc.official_layer_names(21)
    codes = {n: torch.randn(2, 4 + i) for i, n in enumerate(sc.official_layer_names(20))}
    official = sc.style_codes_to_official(codes, list(codes))
    assert official[3].shape == (2, 1, 7, 1, 1)
    back = sc.official_to_style_codes(official)
    assert all(torch.equal(back[n], codes[n]) for n in codes)
    with pytest.raises(ValueError, match="style codes lack layers"):
        sc.style_codes_to_official({"conv1": codes["conv1"]}, list(codes))


# ---------------------------------------------------------------------------------- global direction (fixture)

def test_templates_match_official_file():
    templates = sc.load_templates(TEMPLATES)
    assert len(templates) == 79 and all(t.count("{}") == 1 for t in templates)


def test_text_direction_matches_official(recipe, expected):
    fake = FakeTextEncoder(recipe)
    templates = sc.load_templates(TEMPLATES)
    for which, text in (("target", TARGET), ("neutral", NEUTRAL)):
        ours = fake.encode_text([t.format(text) for t in templates])
        assert torch.equal(ours, expected[f"global.fake_text_embeddings.{which}"])
    features = sc.averaged_text_features(fake, fake_tokenize, [TARGET, NEUTRAL], templates)
    assert max_err(features, expected["global.text_features"]) < 1e-6
    delta_i = sc.text_direction(fake, fake_tokenize, NEUTRAL, TARGET, templates)
    assert max_err(delta_i, expected["global.delta_i"]) < 1e-6
    with pytest.raises(ValueError, match="give the same CLIP embedding"):
        sc.text_direction(fake, fake_tokenize, NEUTRAL, NEUTRAL, templates)
    with pytest.raises(ValueError, match="has no '\\{\\}' placeholder"):
        sc.text_direction(fake, fake_tokenize, NEUTRAL, TARGET, ["a photo"])


@pytest.mark.parametrize("beta", BETAS)
def test_global_direction_matches_official(beta, recipe, expected, s_stats, fake_delta_i_c):
    delta_i = expected["global.delta_i"]
    r_c = sc.channel_relevance(fake_delta_i_c, delta_i)
    assert max_err(r_c, expected["global.r_c"]) < 1e-6
    delta_s = sc.threshold_relevance(r_c, beta)
    assert max_err(delta_s, expected[f"global.beta{beta}.delta_s"]) < 1e-6
    direction = sc.global_direction(delta_i, fake_delta_i_c, s_stats[1], beta)
    names = sc.official_layer_names(26)
    assert list(direction) == names
    errors = [max_err(direction[n].view(1, 1, -1, 1, 1), expected[f"global.beta{beta}.direction.{c:02d}"])
              for c, n in enumerate(names)]
    assert max(errors) < 1e-6
    kept = [n for n in names if direction[n].abs().sum() > 0]
    assert kept == [n for n in sc.styleclip_edit_layers(names)]


def test_global_direction_errors(expected, s_stats, fake_delta_i_c):
    delta_i = expected["global.delta_i"]
    with pytest.raises(ValueError, match="need 5376 channels"):
        sc.global_direction(delta_i, fake_delta_i_c[:5000], s_stats[1], 0.11)
    with pytest.raises(ValueError, match="computed with"):
        sc.global_direction(delta_i[:256], fake_delta_i_c, s_stats[1], 0.11)
    with pytest.raises(ValueError, match="cosine threshold in \\[0, 1\\)"):
        sc.global_direction(delta_i, fake_delta_i_c, s_stats[1], 1.5)
    codes = {n: torch.zeros(1, 512) for n in sc.official_layer_names(20)[:5]}
    direction = {"conv1": torch.ones(512), "convs.12": torch.ones(128)}
    with pytest.raises(ValueError, match="changes layer 'convs.12'"):
        sc.apply_global_direction(codes, direction, 1.0)
    with pytest.raises(ValueError, match="made for another generator"):
        sc.apply_global_direction(codes, {"conv1": torch.ones(256)}, 1.0)
    edited = sc.apply_global_direction(codes, {"conv1": torch.ones(512)}, torch.tensor([2.0]))
    assert edited["conv1"].sum() == 1024 and codes["conv1"].sum() == 0


# ---------------------------------------------------------------------------------- S-space renders (fixture)

@pytest.fixture(scope="module")
def inverted(models_256, expected_256):
    hs, we = models_256
    return invert(expected_256["input"], hs, we, n_iters=3)


def test_stylespace_renders_match_official(models_256, inverted, expected, s_stats, fake_delta_i_c, recipe):
    generator = models_256[0].generator
    assert max_err(inverted.latent, expected["w_codes"]) < TOL
    codes = generator.style_codes(inverted.latent)
    names = generator.layer_names
    official = sc.style_codes_to_official(codes, names)
    s_err = max(max_err(s, expected[f"s.{c:02d}.{n}"]) for c, (n, s) in enumerate(zip(names, official)))
    assert s_err < TOL

    source = sc.render_style_codes(generator, codes, inverted.deltas)
    assert max_err(source, expected["source.image"]) < TOL

    random_direction = sc.official_to_style_codes([expected[f"direction.{c:02d}.{n}"] for c, n in enumerate(names)],
                                                  names)
    edited = sc.apply_global_direction(codes, {n: d[0] for n, d in random_direction.items()}, 2.0)
    assert max_err(sc.render_style_codes(generator, edited, inverted.deltas), expected["edit.image"]) < TOL

    # Official edit.py zips the 20 S layers with the 26-layer direction: the tail is dropped (it is zero).
    direction = sc.global_direction(expected["global.delta_i"], fake_delta_i_c, s_stats[1], 0.11)
    edited = sc.apply_global_direction(codes, direction, 2.0)
    image = sc.render_style_codes(generator, edited, inverted.deltas)
    assert max_err(image, expected["global.beta0.11.alpha2.image"]) < TOL

    # The same edit in one call, from the texts (the ComfyUI node runs this).
    steps = []
    image = sc.styleclip_edit(generator, inverted.latent, FakeTextEncoder(recipe), s_stats[1], fake_delta_i_c,
                              NEUTRAL, TARGET, sc.load_templates(TEMPLATES), 2.0, 0.11, deltas=inverted.deltas,
                              progress=lambda: steps.append(1), tokenize=fake_tokenize)
    assert max_err(image, expected["global.beta0.11.alpha2.image"]) < TOL
    assert len(steps) == inverted.latent.shape[0] and image.device.type == "cpu"


# ---------------------------------------------------------------------------------- real CLIP (tiny, random)

def tiny_clip(seed: int = 0, image_resolution: int = 32):
    import clip.model
    torch.manual_seed(seed)
    model = clip.model.CLIP(embed_dim=32, image_resolution=image_resolution, vision_layers=1, vision_width=64,
                            vision_patch_size=16, context_length=77, vocab_size=49408, transformer_width=64,
                            transformer_heads=1, transformer_layers=1)
    with torch.no_grad():  # random init leaves the projections at zero scale in places; make every path matter
        model.text_projection.normal_(0, 0.2)
        model.visual.proj.normal_(0, 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def clip_pkg():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # clip imports the deprecated pkg_resources
        return pytest.importorskip("clip", reason=f"needs {sc.CLIP_INSTALL}")


def test_clip_text_path_end_to_end(clip_pkg, tmp_path):
    from safetensors.torch import save_file
    model = tiny_clip()
    path = tmp_path / "tiny_clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    loaded = sc.load_clip(path)
    tokens = clip_pkg.tokenize(["a photo of a face.", "a dog"])
    with torch.no_grad():
        assert torch.equal(loaded.encode_text(tokens), model.encode_text(tokens))
    delta_i = sc.text_direction(loaded, None, NEUTRAL, TARGET, sc.load_templates(TEMPLATES))
    assert delta_i.shape == (32,) and abs(delta_i.norm().item() - 1) < 1e-5
    with torch.no_grad():  # by hand, the official way
        feats = []
        for text in (TARGET, NEUTRAL):
            e = model.encode_text(clip_pkg.tokenize([t.format(text) for t in sc.load_templates(TEMPLATES)]))
            e = e / e.norm(dim=-1, keepdim=True)
            feats.append(e.mean(0) / e.mean(0).norm())
        manual = (feats[0] - feats[1]) / (feats[0] - feats[1]).norm()
    assert max_err(delta_i, manual) < 1e-6
    with pytest.raises(ValueError, match="not a CLIP checkpoint"):
        bad = tmp_path / "bad.safetensors"
        save_file({"x": torch.zeros(2)}, str(bad))
        sc.load_clip(bad)


@pytest.mark.filterwarnings("ignore")  # tracer and jit deprecation warnings
def test_clip_torchscript_archive_is_read_without_jit_load(clip_pkg, tmp_path):
    model = tiny_clip(1)
    image, text = torch.randn(1, 3, 32, 32), clip_pkg.tokenize(["a face"])
    archive = tmp_path / "ViT-tiny.pt"
    torch.jit.trace(model, (image, text)).save(str(archive))
    reference = torch.jit.load(str(archive), map_location="cpu").state_dict()  # our own file: trusted here
    state = sc.read_clip_state_dict(archive)
    assert list(state) == list(reference)
    assert all(torch.equal(state[k], reference[k]) for k in reference)

    converted = sc.convert_clip_to_safetensors(archive)
    assert converted.suffix == ".safetensors"
    meta = read_safetensors_metadata(converted)
    assert meta["format"] == "hyperstyle.clip" and meta["source"] == "ViT-tiny.pt"
    for path in (archive, converted):
        loaded = sc.load_clip(path)
        with torch.no_grad():
            assert torch.equal(loaded.encode_image(image), model.encode_image(image))

    plain = tmp_path / "state_dict.pt"
    torch.save(model.state_dict(), plain)
    assert torch.equal(sc.read_clip_state_dict(plain)["visual.proj"], model.visual.proj)


def test_malicious_clip_files_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    evil = _Reduce(os.system, (f"touch {marker}",))
    archive = tmp_path / "evil.pt"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"weight": evil}, protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps(()))
        z.writestr("evil/code/__torch__/model.py", "")
    with pytest.raises(pickle.UnpicklingError, match="refused to load .*system"):
        sc.read_clip_state_dict(archive)
    plain = tmp_path / "evil_state.pt"
    torch.save({"weight": evil}, plain)
    with pytest.raises(ValueError, match="weights_only=True"):
        sc.read_clip_state_dict(plain)
    assert not marker.exists()


# ---------------------------------------------------------------------------------- channel directions (tiny)

def test_channel_directions_tiny_generator(clip_pkg):
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(32, style_dim=32, n_mlp=2, channel_divisor=16)).eval()
    dead_layer, dead_channel = "convs.2", 3
    with torch.no_grad():
        generator.convs[2].conv.weight[:, :, dead_channel] = 0  # S channel 3 of convs.2 cannot change the image
    clip_model = tiny_clip(2)
    stats = sc.compute_s_stats(generator, n_samples=2000)
    assert [a.size for a in stats[0]] == [t[2] for t in generator.layer_table]
    calls = []
    layers = sc.styleclip_edit_layers(generator.layer_names)
    assert layers == ["conv1", "convs.0", "convs.1", "convs.2", "convs.3", "convs.4", "convs.5"]
    delta_i_c = sc.compute_channel_directions(generator, clip_model, n_samples=4, s_stats=stats, batch_size=64,
                                              progress=lambda done, total: calls.append((done, total)))
    assert delta_i_c.shape == (7 * 32, 32) and torch.isfinite(delta_i_c).all()
    assert calls[-1] == (7 * 32 * 4, 7 * 32 * 4) and len(calls) == 7 * 32 * 4 // 32
    norms = delta_i_c.norm(dim=1)
    dead_row = layers.index(dead_layer) * 32 + dead_channel
    assert norms[dead_row] == 0
    alive = torch.ones_like(norms, dtype=torch.bool)
    alive[dead_row] = False
    assert torch.allclose(norms[alive], torch.ones(alive.sum().item()), atol=1e-5)

    # Rows follow `layers`: one layer alone gives the same rows (other batch layout, float noise only).
    single = sc.compute_channel_directions(generator, clip_model, n_samples=4, s_stats=stats, batch_size=20,
                                           layers=[dead_layer])
    start = layers.index(dead_layer) * 32
    assert max_err(single, delta_i_c[start:start + 32]) < 1e-4

    # End to end: text -> global direction from these rows -> edited render.
    delta_i = sc.text_direction(clip_model, None, "a face", "a smiling face")
    direction = sc.global_direction(delta_i, delta_i_c, stats[1], beta=0.0)
    assert direction[dead_layer][dead_channel] == 0 and direction["to_rgb1"].abs().sum() == 0
    codes = generator.style_codes(sc.sample_w(generator, 2, seed=5))
    edited = sc.apply_global_direction(codes, direction, torch.tensor([1.0, -1.0]))
    images = sc.render_style_codes(generator, edited)
    assert images.shape == (2, 3, 32, 32) and torch.isfinite(images).all()
    assert not torch.allclose(images, sc.render_style_codes(generator, codes))
    deltas = {"conv1": torch.zeros(3, *generator.conv1.conv.weight.shape[1:])}
    with pytest.raises(ValueError, match="deltas have batch \\[3\\] but there are 2 style codes"):
        sc.render_style_codes(generator, codes, deltas)
    zero_delta = sc.render_style_codes(generator, codes, {"conv1": deltas["conv1"][:1]})
    assert max_err(zero_delta, sc.render_style_codes(generator, codes)) < 1e-5


def test_channel_layout_and_saving_for_a_generator(tmp_path):
    generator = Generator(GeneratorConfig(32, style_dim=32, n_mlp=2, channel_divisor=16)).eval()
    channels = {name: in_channels for name, _, in_channels, _ in generator.layer_table}
    layout = sc.channel_layout(generator)
    assert layout == [(name, channels[name]) for name in sc.styleclip_edit_layers(generator.layer_names)]
    assert sc.channel_layout(generator, ["convs.1", "conv1"]) == [("convs.1", channels["convs.1"]),
                                                                  ("conv1", channels["conv1"])]
    with pytest.raises(ValueError, match=r"layers \['convs.99'\] are not layers of this generator"):
        sc.channel_layout(generator, ["conv1", "convs.99"])
    with pytest.raises(ValueError, match=r"layers \[\] are not layers of this generator"):
        sc.channel_layout(generator, [])
    delta_i_c = torch.randn(sum(size for _, size in layout), 8)
    path = sc.save_generator_channel_directions(tmp_path / "fs.safetensors", delta_i_c, generator,
                                                extra_metadata={"clip": "tiny"})
    loaded, layers = sc.load_channel_directions(path)
    assert torch.equal(loaded, delta_i_c) and layers == [name for name, _ in layout]
    assert read_safetensors_metadata(path)["clip"] == "tiny"
    one = sc.save_generator_channel_directions(tmp_path / "one.safetensors", delta_i_c[:channels["convs.2"]],
                                               generator, layers=["convs.2"])
    assert sc.load_channel_directions(one)[1] == ["convs.2"]
    with pytest.raises(ValueError, match="sum must equal the row count"):
        sc.save_generator_channel_directions(tmp_path / "x.safetensors", delta_i_c[1:], generator)


def test_channel_directions_save_load(tmp_path):
    delta_i_c = torch.randn(6, 4)
    path = sc.save_channel_directions(tmp_path / "fs.safetensors", delta_i_c, ["conv1", "convs.0"], [2, 4])
    loaded, layers = sc.load_channel_directions(path)
    assert torch.equal(loaded, delta_i_c) and layers == ["conv1", "convs.0"]
    np.save(tmp_path / "fs3.npy", delta_i_c.numpy())
    loaded, layers = sc.load_channel_directions(tmp_path / "fs3.npy")
    assert torch.equal(loaded, delta_i_c) and layers is None
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a plain numeric .npy"):
        sc.load_channel_directions(tmp_path / "objects.npy")
    with pytest.raises(ValueError, match="sum must equal the row count"):
        sc.save_channel_directions(tmp_path / "x.safetensors", delta_i_c, ["conv1"], [2])
    # Files of the project's other formats are refused by name; plain (untagged) state dicts load as CLIP weights.
    with pytest.raises(ValueError, match="fs.safetensors is not a CLIP weights file"):
        sc.read_clip_state_dict(path)
    with pytest.raises(ValueError, match="is not a StyleCLIP channel directions file"):
        sc.load_channel_directions(sc.save_s_stats(tmp_path / "s.safetensors", [np.ones(2, np.float32)],
                                                   [np.ones(2, np.float32)], ["a"]))
