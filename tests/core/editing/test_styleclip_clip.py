"""StyleCLIP with a real (tiny, random) CLIP: the text path end to end, CLIP files read safely, and the per-channel
CLIP directions of a tiny generator."""
from __future__ import annotations

import os
import pickle
import warnings
import zipfile

import numpy as np
import pytest
import torch

from conftest import SHARED
from hyperstyle_core.editing import styleclip as sc
from hyperstyle_core.io.formats import read_safetensors_metadata
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig
from hyperstyle_core.testing import tiny_clip

TEMPLATES = SHARED / "data" / "official" / "editing" / "styleclip" / "templates.txt"
NEUTRAL, TARGET = "face with hair", "face with long hair"


def max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float().cpu() - b.float().cpu()).abs().max().item()


class _Reduce:
    """Pickles as a call of func(*args): what a malicious file holds."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


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
