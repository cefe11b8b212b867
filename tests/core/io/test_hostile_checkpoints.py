"""Hostile checkpoints: bad stored configs, malformed official .pt files (deep nesting, shared objects, integer
weights, wrong keys) and crafted weight-delta files are refused with a ValueError that names the file and the problem,
before any large work. (Hostile tensors: test_hostile_tensors.py.)"""
from __future__ import annotations

import json
import struct
import sys

import pytest
import torch
from safetensors.torch import save_file

from hyperstyle_core import GeneratorSignature, WeightDeltas, load, read_info
from hyperstyle_core.cli import main
from hyperstyle_core.io.convert import convert, detect
from hyperstyle_core.io.formats import read_safetensors_header, write_safetensors
from hyperstyle_core.io.unpickle import read_official_checkpoint
from hyperstyle_core.nn import configs
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig
from hostile_files import fake_generator_keys, official_8px_checkpoint, tensors_and_meta, tiny_generator_file


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return tiny_generator_file(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def official_8px():
    return official_8px_checkpoint()


# ---------------------------------------------------------------------------------------------- 5: stored config

def _with_metadata(src, dst, **changes):
    tensors, meta = tensors_and_meta(src)
    save_file(tensors, str(dst), metadata={**meta, **changes})
    return dst


def _generator_config_json(**fields) -> str:
    generator = {"size": 8, "style_dim": 8, "n_mlp": 1, "channel_multiplier": 2, "lr_mlp": 0.01,
                 "blur_kernel": [1, 3, 3, 1], "output_crop": None, "channel_divisor": 64}
    generator.update(fields)
    return json.dumps({"generator": generator})


BAD_CONFIGS = {
    "n_mlp_huge": (_generator_config_json(n_mlp=3_000_000), r"generator\.n_mlp is 3000000; supported values are 1"),
    "size_2048": (_generator_config_json(size=2048), r"generator\.size is 2048; supported values are 8 to 1024"),
    "size_not_power_of_two": (_generator_config_json(size=96), "must be a power of two"),
    "divisor_zero": (_generator_config_json(channel_divisor=0), r"generator\.channel_divisor is 0"),
    "empty": ("{}", "config lacks the field 'generator'"),
    "not_an_object": ("[1, 2]", "config must be a JSON object, got list"),
    "size_as_text": (_generator_config_json(size="256"), r"generator\.size must be an integer, got str"),
    "size_as_bool": (_generator_config_json(size=True), r"generator\.size must be an integer, got bool"),
    "n_mlp_float": (_generator_config_json(n_mlp=1.5), r"generator\.n_mlp must be an integer, got float"),
    "kernel_text": (_generator_config_json(blur_kernel="abc"), r"generator\.blur_kernel must be a list"),
    "kernel_nan": (_generator_config_json(blur_kernel=[1, 3, float("nan"), 1]), r"blur_kernel\[2\] must be a finite"),
    "crop_short": (_generator_config_json(output_crop=[1]), r"output_crop has 1 entries; expected 2"),
    "lr_negative": (_generator_config_json(lr_mlp=-1), r"lr_mlp is -1; it must be > 0"),
    "generator_null": ('{"generator": null}', "generator must be a JSON object, got NoneType"),
    "deep_json": ("[" * 100_000 + "]" * 100_000, "no readable architecture config"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_stored_config_is_refused_before_building(case, tiny_file, tmp_path, monkeypatch):
    """ValueError naming the file and field, from read_info and load, and no network is ever built."""
    def no_build(self):
        raise AssertionError("a network was built from an invalid config")
    monkeypatch.setattr(configs.StyleGAN2Config, "build", no_build)
    text, message = BAD_CONFIGS[case]
    bad = _with_metadata(tiny_file, tmp_path / f"{case}.safetensors", config=text)
    with pytest.raises(ValueError, match=rf"{case}\.safetensors .*{message}"):
        read_info(bad)
    with pytest.raises(ValueError, match=message):
        load(bad, device="cpu")


def test_valid_stored_config_still_builds(tiny_file):
    assert isinstance(load(tiny_file, device="cpu"), Generator)


def test_typed_configs_validate_every_kind():
    generator = json.loads(_generator_config_json())["generator"]
    spec = {"height": 256, "width": 256, "dataset_type": "ffhq_encode"}
    good = {"generator": generator, "layers_to_tune": [0, 2], "variant": "shared", "input_nc": 6, "input": spec}
    assert configs.config_from_dict("hyperstyle", good).layers_to_tune == (0, 2)
    bad = [("hyperstyle", {**good, "layers_to_tune": [0, 99]}, r"layers_to_tune\[1\] is 99; supported .* 0 to 25"),
           ("hyperstyle", {**good, "layers_to_tune": [2, 2]}, "lists a layer twice"),
           ("hyperstyle", {**good, "variant": ["shared"]}, "known hypernetwork variants"),
           ("hyperstyle", {**good, "input_nc": 0}, r"config\.input_nc is 0"),
           ("w_encoder", {"generator": generator, "input": {**spec, "height": -1}}, r"input\.height is -1"),
           ("w_encoder", {"generator": generator, "input": {**spec, "dataset_type": 7}}, "dataset_type must be"),
           ("restyle_e4e", {"generator": generator}, "config lacks the field 'input'"),
           ("nonsense", {}, "unknown model kind 'nonsense'")]
    for kind, config, message in bad:
        with pytest.raises(ValueError, match=message):
            configs.config_from_dict(kind, config)


def test_bad_direction_config_and_metadata_types(tmp_path):
    path = tmp_path / "d.safetensors"
    write_safetensors(path, {"direction": torch.ones(1, 8)}, "checkpoint",
                      {"kind": "direction", "config": "{}", "opts": "{}", "source_name": "", "source_sha256": ""})
    with pytest.raises(ValueError, match=r"d\.safetensors has an invalid latent direction config: config\.shape"):
        load(path, device="cpu")
    # Metadata values must be strings (our header reader would otherwise hand a list to the loaders).
    header = json.dumps({"__metadata__": {"format": "hyperstyle.checkpoint", "kind": ["direction"]}}).encode()
    odd = tmp_path / "odd.safetensors"
    odd.write_bytes(struct.pack("<Q", len(header)) + header)
    with pytest.raises(ValueError, match="corrupt safetensors metadata"):
        read_info(odd)
    deep = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    (tmp_path / "deep.safetensors").write_bytes(struct.pack("<Q", len(deep)) + deep)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_safetensors_header(tmp_path / "deep.safetensors")


# ---------------------------------------------------------------------------------------------- 6: malformed .pt

def _detect(checkpoint):
    return detect(checkpoint, "x.pt")


def test_malformed_checkpoints_give_value_errors_naming_file_and_problem():
    hypernet = {**fake_generator_keys("decoder."), "hypernet.layer.weight": torch.zeros(1)}
    cases = [
        ({"g_ema": {k: v for k, v in fake_generator_keys(n_mlp=3).items() if k != "style.1.weight"}},
         r"x\.pt: tensor style\.1\.weight is missing"),
        ({"g_ema": {**fake_generator_keys(), "style.1.weight": torch.zeros(4)}},
         r"x\.pt: tensor style\.1\.weight has shape \[4\]; expected a 2-D weight"),
        ({"g_ema": {**fake_generator_keys(), "convs.6.conv.weight": torch.zeros(4)}},
         r"x\.pt: tensor convs\.6\.conv\.weight has shape \[4\]; expected a 5-D weight"),
        ({"g_ema": fake_generator_keys(n_blocks=11)}, r"x\.pt: the generator has 11 to_rgbs blocks"),
        ({"g_ema": fake_generator_keys(n_mlp=40)}, r"x\.pt: the generator found is not a supported .*n_mlp is 40"),
        ({"state_dict": hypernet, "latent_avg": torch.zeros(12, 4)},
         r"x\.pt: tensor hypernet\.conv1\.weight is missing"),
        ({"state_dict": {**hypernet, "hypernet.conv1.weight": torch.zeros(6)}, "latent_avg": torch.zeros(12, 4)},
         r"hypernet\.conv1\.weight has shape \[6\]; expected a 4-D weight"),
        ({"state_dict": {**hypernet, "hypernet.conv1.weight": torch.zeros(64, 6, 7, 7)}, "latent_avg": 3},
         r"x\.pt: the HyperStyle checkpoint's latent_avg is a int; expected a tensor"),
        ({"state_dict": {**fake_generator_keys("decoder."), **{f"encoder.styles.{i}.x": torch.zeros(1)
                                                                  for i in range(14)}},
          "latent_avg": torch.zeros(14, 4)}, r"x\.pt: tensor encoder\.input_layer\.0\.weight is missing"),
    ]
    for checkpoint, message in cases:
        with pytest.raises(ValueError, match=message):
            _detect(checkpoint)


def _nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_deeply_nested_or_shared_opts_are_refused():
    with pytest.raises(ValueError, match=r"x\.pt: its 'opts' are nested more than 64 levels deep"):
        _detect({"g_ema": fake_generator_keys(), "opts": _nested(5000)})
    # A DAG: 60 levels of a list holding the level below twice is 2**60 values once written out as JSON.
    shared: list = [1]
    for _ in range(60):
        shared = [shared, shared]
    with pytest.raises(ValueError, match="hold more than 10000 values"):
        _detect({"g_ema": fake_generator_keys(), "opts": {"x": shared}})


def test_deeply_nested_pt_file_is_refused(tmp_path):
    path = tmp_path / "deep.pt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)      # the pickler recurses once per level
    try:
        torch.save({"g_ema": {}, "opts": _nested(2000)}, path)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ValueError, match=r"deep\.pt: containers are nested more than 64 levels deep"):
        read_official_checkpoint(path)


def test_integer_weights_are_refused_at_conversion_and_load(tmp_path, official_8px, tiny_file):
    checkpoint = {"g_ema": dict(official_8px["g_ema"]), "latent_avg": official_8px["latent_avg"]}
    checkpoint["g_ema"]["convs.0.conv.weight"] = checkpoint["g_ema"]["convs.0.conv.weight"].to(torch.int32)
    torch.save(checkpoint, tmp_path / "ints.pt")
    with pytest.raises(ValueError, match=r"ints\.pt: tensor convs\.0\.conv\.weight has dtype int32, but the network "
                                         r"needs floating-point weights"):
        convert(tmp_path / "ints.pt", tmp_path)
    assert not (tmp_path / "ints.safetensors").exists()
    tensors, meta = tensors_and_meta(tiny_file)
    tensors["conv1.conv.weight"] = tensors["conv1.conv.weight"].to(torch.int64)
    save_file(tensors, str(tmp_path / "ints.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"tensor conv1\.conv\.weight has dtype int64"):
        load(tmp_path / "ints.safetensors", device="cpu")


def test_the_8px_official_layout_converts(tmp_path, official_8px):
    """The good case of the tests around it: the same checkpoint, untouched, converts and loads."""
    torch.save(official_8px, tmp_path / "g8.pt")
    assert isinstance(load(convert(tmp_path / "g8.pt", tmp_path), device="cpu"), Generator)


def test_cli_convert_goes_on_after_a_bad_file(tmp_path, capsys):
    torch.save(torch.randn(1, 8), tmp_path / "a.pt")
    torch.save({"g_ema": {k: v for k, v in fake_generator_keys(n_mlp=3).items() if k != "style.1.weight"}},
               tmp_path / "b.pt")
    torch.save(torch.randn(1, 8), tmp_path / "c.pt")
    out = tmp_path / "out"
    code = main(["convert", *(str(tmp_path / f"{n}.pt") for n in "abc"), "--out", str(out)])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.safetensors", "c.safetensors"]
    err = capsys.readouterr().err
    assert "b.pt: tensor style.1.weight is missing" in err
    assert "1 of 3 files could not be converted" in err


# ---------------------------------------------------------------------------------------------- 12: weight deltas

def _deltas_file(path, signature_text: str | None, tensors=None):
    meta = {} if signature_text is None else {"signature": signature_text}
    return write_safetensors(path, tensors or {}, "weight_deltas", meta)


class _CountingLayers(tuple):
    """A layer table that counts how often it is walked."""
    walks = 0

    def __iter__(self):
        type(self).walks += 1
        return super().__iter__()


def test_deltas_lookup_is_linear_in_the_layer_count():
    """Building deltas walks the signature's layer table a fixed number of times, not once per layer."""
    n = 3000
    layers = _CountingLayers((f"layer{i}", 1, 1, 1) for i in range(n))
    signature = GeneratorSignature(8, 8, layers)
    tensors = {f"layer{i}": torch.zeros(1, 1, 1, 1, 1) for i in range(n)}
    _CountingLayers.walks = 0
    deltas = WeightDeltas(tensors, signature)
    assert deltas.layer_indices[-1] == n - 1
    assert _CountingLayers.walks <= 3


def test_crafted_signatures_are_refused_before_reading_tensors(tmp_path):
    real = GeneratorSignature.of(GeneratorConfig(8, style_dim=8, channel_divisor=64))
    layers = [list(x) for x in real.layers]
    huge = json.dumps({"size": 8, "style_dim": 8, "layers": [[f"l{i}", 1, 1, 1] for i in range(200_000)]})
    cases = [
        (None, "has no generator signature in its metadata"),
        (huge, "200000 entries, but a 8px generator has 5 modulated layers"),
        ("[" * 100_000, "not readable JSON"),
        (json.dumps([1]), "is a JSON list"),
        (json.dumps({"size": 2048, "style_dim": 8, "layers": layers}), "signature size is 2048"),
        (json.dumps({"size": 8, "style_dim": "8", "layers": layers}), "signature style_dim is '8'"),
        (json.dumps({"size": 8, "style_dim": 8, "layers": [layers[1], layers[0], *layers[2:]]}),
         "is not layer conv1 of a 8px generator"),
        (json.dumps({"size": 8, "style_dim": 8, "layers": [["conv1", -1, 8, 3], *layers[1:]]}),
         "is not layer conv1"),
    ]
    for i, (text, message) in enumerate(cases):
        path = _deltas_file(tmp_path / f"d{i}.safetensors", text)
        with pytest.raises(ValueError, match=rf"d{i}\.safetensors .*{message}"):
            WeightDeltas.load(path)


def test_bad_delta_tensors_are_refused(tmp_path):
    signature = GeneratorSignature.of(GeneratorConfig(8, style_dim=8, channel_divisor=64)).to_json()
    cases = [({"convs.9": torch.zeros(1, 1, 1, 1, 1)}, "holds a delta for 'convs.9', which its 8px generator"),
             ({"conv1": torch.zeros(1, 8, 8, 3)}, r"delta for conv1 has shape \[1, 8, 8, 3\], expected"),
             ({"conv1": torch.zeros(1, 8, 8, 3, 3, dtype=torch.int32)}, "dtype torch.int32; deltas are floats"),
             ({"conv1": torch.full((1, 8, 8, 3, 3), float("nan"))}, "delta for conv1 holds NaN or Inf")]
    for i, (tensors, message) in enumerate(cases):
        path = _deltas_file(tmp_path / f"t{i}.safetensors", signature, tensors)
        with pytest.raises(ValueError, match=rf"t{i}\.safetensors:? .*{message}"):
            WeightDeltas.load(path)
    good = _deltas_file(tmp_path / "good.safetensors", signature, {"conv1": torch.zeros(2, 8, 8, 3, 3)})
    assert WeightDeltas.load(good).batch_size == 2
