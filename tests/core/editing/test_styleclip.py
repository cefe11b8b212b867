"""StyleCLIP global directions against expected_stylespace_256 (official get_delta_s, S-space renders) and the safe
reader of S_mean_std. (A tiny random CLIP end to end, CLIP files, channel directions: test_styleclip_clip.py.)"""
from __future__ import annotations

import math
import os
import pickle

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
