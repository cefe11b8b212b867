"""Hostile files: crafted tensors, metadata and checkpoints are refused with a ValueError before any large work.

Every file here is made at test time and is a few KB (the 8 px official-layout generator is 28 MB). Nothing large is
ever allocated: the checks under test refuse before that, and a regression fails on the error message or on a
structural counter, never on timing.
"""
from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import sys
import zipfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from hyperstyle_core import GeneratorSignature, WeightDeltas, load, read_info
from hyperstyle_core.cli import main
from hyperstyle_core.editing import styleclip as sc
from hyperstyle_core.editing.ganspace import load_ganspace
from hyperstyle_core.editing.styleclip.clip_model import read_clip_state_dict
from hyperstyle_core.io.checkpoints import save_model
from hyperstyle_core.io.convert import convert, detect
from hyperstyle_core.io.directions import load_direction
from hyperstyle_core.io.formats import read_safetensors_header, write_safetensors
from hyperstyle_core.io.latents import load_latent_file, save_latent
from hyperstyle_core.io.unpickle import read_official_checkpoint, read_torchscript_tensors
from hyperstyle_core.nn import configs
from hyperstyle_core.nn.stylegan2 import Generator, GeneratorConfig

HUGE = 2 ** 31       # elements of a crafted view: 8 GB as float32 if anything materialised it


def _stride0(*shape: int) -> torch.Tensor:
    """A view of one float repeated `shape` times: torch.save keeps the stride 0, so the file stays tiny."""
    return torch.zeros(1).expand(*shape)


def _tensors_and_meta(path):
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    """A converted-format tiny generator (8 px, divided widths): the base for tampered metadata and tensors."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.safetensors"
    return save_model(Generator(GeneratorConfig(8, style_dim=8, n_mlp=1, channel_divisor=64)), path)


@pytest.fixture(scope="module")
def official_8px():
    """An official-layout `g_ema` checkpoint of an 8 px generator (full widths: the converter assumes them)."""
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(8, style_dim=8, n_mlp=1))
    return {"g_ema": dict(generator.state_dict()), "latent_avg": torch.zeros(8)}


def _fake_generator_keys(prefix: str = "", n_blocks: int = 6, n_mlp: int = 2) -> dict[str, torch.Tensor]:
    """Just the keys detect() reads to size a generator (shapes as in rosinality's g_ema)."""
    sd = {f"{prefix}to_rgbs.{i}.bias": torch.zeros(1, 3, 1, 1) for i in range(n_blocks)}
    sd.update({f"{prefix}style.{i}.weight": torch.zeros(4, 4) for i in range(1, n_mlp + 1)})
    return sd


# ---------------------------------------------------------------------------------------------- 4: stride-0 views

def test_stride0_file_is_tiny_and_keeps_its_stride(tmp_path):
    """The premise of the tests below: a 2**31-element tensor saves to about 1 KB and loads as a view."""
    path = tmp_path / "age.pt"
    torch.save(_stride0(1, HUGE), path)
    assert path.stat().st_size < 4096
    assert torch.load(path, weights_only=True, mmap=True).stride() == (0, 0)


def test_stride0_direction_is_refused_by_loader_and_converter(tmp_path):
    path = tmp_path / "age.pt"
    torch.save(_stride0(1, HUGE), path)
    with pytest.raises(ValueError, match=r"age\.pt: .*views 2147483648 elements of a storage that holds 1"):
        load_direction(path)
    with pytest.raises(ValueError, match=r"views 2147483648 elements"):
        convert(path, tmp_path / "out")
    assert not (tmp_path / "out" / "age.safetensors").exists()


def test_stride0_weights_inside_a_checkpoint_are_named(tmp_path, official_8px):
    """Right shapes, no data: without the check a ~1 KB file converts into a 28 MB one (GBs at full size)."""
    checkpoint = {"g_ema": {k: _stride0(*v.shape) for k, v in official_8px["g_ema"].items()},
                  "latent_avg": torch.zeros(8)}
    path = tmp_path / "hollow.pt"
    torch.save(checkpoint, path)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(ValueError, match=r"hollow\.pt: g_ema\['[a-z0-9_.]+'\]: tensor of shape .* views"):
        convert(path, tmp_path)
    assert not (tmp_path / "hollow.safetensors").exists()


def test_stride0_ganspace_is_refused(tmp_path):
    path = tmp_path / "cars_pca.pt"
    torch.save({"mean": torch.zeros(1, 512), "std": torch.ones(80), "comp": _stride0(80, 1, HUGE)}, path)
    with pytest.raises(ValueError, match=r"cars_pca\.pt: comp: tensor of shape \[80, 1, 2147483648\]"):
        load_ganspace(path)


def test_direction_and_ganspace_shapes_are_bounded(tmp_path):
    """Real data, absurd shapes (what a larger crafted file would hold): refused by shape, before any copy."""
    torch.save(torch.zeros(1, 19, 8), tmp_path / "wplus.pt")
    with pytest.raises(ValueError, match=r"direction has shape \[1, 19, 8\]; a generator has at most 18 W\+"):
        load_direction(tmp_path / "wplus.pt")
    torch.save(torch.zeros(1, configs.MAX_STYLE_DIM + 1), tmp_path / "wide.pt")
    with pytest.raises(ValueError, match="at most 4096 values"):
        load_direction(tmp_path / "wide.pt")
    torch.save({"mean": torch.zeros(1, 4), "std": torch.ones(5), "comp": torch.zeros(5, 1, 4)}, tmp_path / "k.pt")
    with pytest.raises(ValueError, match=r"K <= D <= 4096"):
        load_ganspace(tmp_path / "k.pt")


class _StorageRef:
    pass


class _StrideZeroTensor:
    """Pickles as torch._utils._rebuild_tensor_v2 over a 1-element storage with 2**31 elements, stride 0."""

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_StorageRef(), 0, (HUGE,), (0,), False, collections.OrderedDict())


class _ArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", 1) if isinstance(obj, _StorageRef) else None


class _Module:
    """Pickled under this module's name, then renamed to a TorchScript class (`__torch__.Model`) in the bytes."""

    def __init__(self, state):
        self.state = state

    def __reduce__(self):
        return _Module, (None,), self.state


def _torchscript_archive(path, state) -> None:
    """A TorchScript-layout zip whose data.pkl is a module with attributes `state` (storage data/0 is one float)."""
    buffer = io.BytesIO()
    _ArchivePickler(buffer, protocol=2).dump(_Module(state))
    ours = f"c{_Module.__module__}\n{_Module.__qualname__}\n".encode()
    data = buffer.getvalue()
    assert data.count(ours) == 1
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("m/data.pkl", data.replace(ours, b"c__torch__\nModel\n"))
        z.writestr("m/constants.pkl", pickle.dumps(()))
        z.writestr("m/code/__torch__/model.py", "")
        z.writestr("m/data/0", struct.pack("<f", 0.0))


def test_stride0_torchscript_tensor_is_refused(tmp_path):
    archive = tmp_path / "ViT-B-32.pt"
    _torchscript_archive(archive, {"visual.proj": _StrideZeroTensor()})
    assert archive.stat().st_size < 4096
    with pytest.raises(ValueError, match=r"ViT-B-32\.pt: TorchScript tensor of shape \[2147483648\] .* holds 1"):
        read_torchscript_tensors(archive)
    with pytest.raises(ValueError, match="views 2147483648 elements"):
        read_clip_state_dict(archive)


class _PlainTensor:
    """Pickles as a [n] float tensor over storage data/0 of n elements."""

    def __init__(self, n: int):
        self.n = n

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (_SizedStorageRef(self.n), 0, (self.n,), (1,), False,
                                                 collections.OrderedDict())


class _SizedStorageRef:
    def __init__(self, n: int):
        self.n = n


class _SizedArchivePickler(pickle.Pickler):
    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", obj.n) if isinstance(obj, _SizedStorageRef) else None


def test_torchscript_zip_bomb_is_refused_before_decompressing(tmp_path, monkeypatch):
    n = 4 << 20                 # 16 MB of zeros deflate to ~16 KB: 1000x more than a genuine (stored) archive
    buffer = io.BytesIO()
    _SizedArchivePickler(buffer, protocol=2).dump(_Module({"visual.proj": _PlainTensor(n)}))
    ours = f"c{_Module.__module__}\n{_Module.__qualname__}\n".encode()
    archive = tmp_path / "bomb.pt"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("m/data.pkl", buffer.getvalue().replace(ours, b"c__torch__\nModel\n"))
        z.writestr("m/constants.pkl", pickle.dumps(()))
        z.writestr("m/code/__torch__/model.py", "")
        z.writestr("m/data/0", bytes(4 * n))
    assert archive.stat().st_size < 64 * 1024
    reads, read = [], zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: reads.append(name) or read(self, name))
    with pytest.raises(ValueError, match=r"bomb\.pt: the tensors unpack to more than \d+ bytes, far more than the "
                                         r"archive holds"):
        read_torchscript_tensors(archive)
    assert not any(str(getattr(r, "filename", r)).endswith("data/0") for r in reads)


def test_torchscript_pickle_bomb_is_refused(tmp_path):
    archive = tmp_path / "big.pt"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("m/data.pkl", bytes(80 << 20))
        z.writestr("m/constants.pkl", pickle.dumps(()))
    with pytest.raises(ValueError, match=r"big\.pt: data\.pkl unpacks to 83886080 bytes"):
        read_torchscript_tensors(archive)


def test_stride0_plain_clip_state_dict_is_refused(tmp_path):
    path = tmp_path / "clip_state.pt"
    torch.save({"visual.proj": _stride0(HUGE)}, path)
    with pytest.raises(ValueError, match=r"clip_state\.pt: visual\.proj: tensor of shape \[2147483648\]"):
        read_clip_state_dict(path)


# ---------------------------------------------------------------------------------------------- 5: stored config

def _with_metadata(src, dst, **changes):
    tensors, meta = _tensors_and_meta(src)
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
    hypernet = {**_fake_generator_keys("decoder."), "hypernet.layer.weight": torch.zeros(1)}
    cases = [
        ({"g_ema": {k: v for k, v in _fake_generator_keys(n_mlp=3).items() if k != "style.1.weight"}},
         r"x\.pt: tensor style\.1\.weight is missing"),
        ({"g_ema": {**_fake_generator_keys(), "style.1.weight": torch.zeros(4)}},
         r"x\.pt: tensor style\.1\.weight has shape \[4\]; expected a 2-D weight"),
        ({"g_ema": {**_fake_generator_keys(), "convs.6.conv.weight": torch.zeros(4)}},
         r"x\.pt: tensor convs\.6\.conv\.weight has shape \[4\]; expected a 5-D weight"),
        ({"g_ema": _fake_generator_keys(n_blocks=11)}, r"x\.pt: the generator has 11 to_rgbs blocks"),
        ({"g_ema": _fake_generator_keys(n_mlp=40)}, r"x\.pt: the generator found is not a supported .*n_mlp is 40"),
        ({"state_dict": hypernet, "latent_avg": torch.zeros(12, 4)},
         r"x\.pt: tensor hypernet\.conv1\.weight is missing"),
        ({"state_dict": {**hypernet, "hypernet.conv1.weight": torch.zeros(6)}, "latent_avg": torch.zeros(12, 4)},
         r"hypernet\.conv1\.weight has shape \[6\]; expected a 4-D weight"),
        ({"state_dict": {**hypernet, "hypernet.conv1.weight": torch.zeros(64, 6, 7, 7)}, "latent_avg": 3},
         r"x\.pt: the HyperStyle checkpoint's latent_avg is a int; expected a tensor"),
        ({"state_dict": {**_fake_generator_keys("decoder."), **{f"encoder.styles.{i}.x": torch.zeros(1)
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
        _detect({"g_ema": _fake_generator_keys(), "opts": _nested(5000)})
    # A DAG: 60 levels of a list holding the level below twice is 2**60 values once written out as JSON.
    shared: list = [1]
    for _ in range(60):
        shared = [shared, shared]
    with pytest.raises(ValueError, match="hold more than 10000 values"):
        _detect({"g_ema": _fake_generator_keys(), "opts": {"x": shared}})


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
    tensors, meta = _tensors_and_meta(tiny_file)
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
    torch.save({"g_ema": {k: v for k, v in _fake_generator_keys(n_mlp=3).items() if k != "style.1.weight"}},
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


# ---------------------------------------------------------------------------------------------- 13: NaN / Inf

def test_non_finite_weights_are_refused_at_conversion_and_load(tmp_path, official_8px, tiny_file):
    checkpoint = {"g_ema": dict(official_8px["g_ema"]), "latent_avg": official_8px["latent_avg"]}
    weight = checkpoint["g_ema"]["convs.1.conv.weight"].clone()
    weight[0, 0, 0, 0, 0] = float("nan")
    checkpoint["g_ema"]["convs.1.conv.weight"] = weight
    torch.save(checkpoint, tmp_path / "nan.pt")
    with pytest.raises(ValueError, match=r"nan\.pt: tensor convs\.1\.conv\.weight holds NaN or Inf"):
        convert(tmp_path / "nan.pt", tmp_path)
    assert not (tmp_path / "nan.safetensors").exists()
    tensors, meta = _tensors_and_meta(tiny_file)
    tensors["style.1.bias"] = torch.full_like(tensors["style.1.bias"], float("inf"))
    save_file(tensors, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"inf\.safetensors: tensor style\.1\.bias holds NaN or Inf"):
        load(tmp_path / "inf.safetensors", device="cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_checks_read_in_chunks_find_the_last_bad_value(tmp_path, monkeypatch, dtype):
    """Load reads the file in chunks (no whole-tensor temporaries, nothing mapped); every chunk is checked."""
    from hyperstyle_core.io import checkpoints
    from hyperstyle_core.io.formats import read_safetensors_header
    monkeypatch.setattr(checkpoints, "FINITE_CHUNK_BYTES", 64)
    tensors = {"a.weight": torch.ones(3, 50, dtype=dtype), "b.bias": torch.zeros(7, dtype=dtype),
               "c.index": torch.arange(5)}
    save_file(tensors, str(tmp_path / "good.safetensors"))
    checkpoints.check_finite_file(tmp_path / "good.safetensors", read_safetensors_header(tmp_path / "good.safetensors"),
                                  "good.safetensors")
    checkpoints.check_finite(tensors, "good")
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = dict(tensors, **{"a.weight": tensors["a.weight"].clone()})
        bad["a.weight"][-1, -1] = value           # in the last of the tensor's 5 (float32) or 3 chunks
        save_file(bad, str(tmp_path / "bad.safetensors"))
        header = read_safetensors_header(tmp_path / "bad.safetensors")
        with pytest.raises(ValueError, match=r"bad\.safetensors: tensor a\.weight holds NaN or Inf"):
            checkpoints.check_finite_file(tmp_path / "bad.safetensors", header, "bad.safetensors")
        with pytest.raises(ValueError, match=r"bad: tensor a\.weight holds NaN or Inf"):
            checkpoints.check_finite(bad, "bad")


def test_non_finite_latents_directions_and_ganspace_are_refused(tmp_path):
    save_latent(tmp_path / "x_latent.safetensors", torch.tensor([[[0.0, float("nan")]]]))
    with pytest.raises(ValueError, match=r"x_latent\.safetensors: tensor 'latent' holds NaN or Inf"):
        load_latent_file(tmp_path / "x_latent.safetensors")
    write_safetensors(tmp_path / "y_latent.safetensors", {"other": torch.zeros(1)}, "latent")
    with pytest.raises(ValueError, match="has no 'latent' tensor"):
        load_latent_file(tmp_path / "y_latent.safetensors")

    torch.save(torch.tensor([[1.0, float("inf")]]), tmp_path / "smile.pt")
    with pytest.raises(ValueError, match=r"smile: direction holds NaN or Inf"):
        load_direction(tmp_path / "smile.pt")
    write_safetensors(tmp_path / "age.safetensors", {"direction": torch.tensor([[float("nan"), 1.0]])}, "checkpoint",
                      {"kind": "direction", "config": '{"shape": [1, 2]}', "opts": "{}", "source_name": "",
                       "source_sha256": ""})
    for loader in (load_direction, lambda p: load(p, device="cpu")):
        with pytest.raises(ValueError, match=r"age: direction holds NaN or Inf"):
            loader(tmp_path / "age.safetensors")

    torch.save({"mean": torch.zeros(1, 4), "std": torch.tensor([1.0, float("nan")]), "comp": torch.zeros(2, 1, 4)},
               tmp_path / "pca.pt")
    with pytest.raises(ValueError, match=r"pca: GANSpace statistics hold NaN or Inf"):
        load_ganspace(tmp_path / "pca.pt")


# ---------------------------------------------------------------------------------------------- StyleCLIP files

def test_npy_header_promising_more_than_the_file_holds_is_refused(tmp_path):
    """np.load allocates what the header describes before reading: 256 GiB here, from a 144-byte file."""
    path = tmp_path / "fs3.npy"
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (2 ** 20, 2 ** 16)})
        f.write(b"\0" * 16)
    with pytest.raises(ValueError, match=r"fs3\.npy: its header describes float32 \[1048576, 65536\] "
                                         r"\(274877906944 bytes\) but the file holds 16 bytes"):
        sc.load_channel_directions(path)


def test_styleclip_files_with_bad_metadata_or_values_are_refused(tmp_path):
    stats = write_safetensors(tmp_path / "s.safetensors", {"mean.00": torch.ones(4), "std.00": torch.ones(4)},
                              "styleclip_s_stats", {})
    with pytest.raises(ValueError, match=r"s\.safetensors has no readable 'layers' metadata"):
        sc.load_s_stats(stats)
    directions = write_safetensors(tmp_path / "c.safetensors", {"delta_i_c": torch.ones(2, 4)},
                                   "styleclip_channel_directions", {"layers": '[["a", "2"]]'})
    with pytest.raises(ValueError, match=r"c\.safetensors: its 'layers' metadata is not a list of \[layer name"):
        sc.load_channel_directions(directions)
    np.save(tmp_path / "nan.npy", np.full((2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match=r"nan\.npy: channel directions hold NaN or Inf"):
        sc.load_channel_directions(tmp_path / "nan.npy")
    path = sc.save_s_stats(tmp_path / "ok.safetensors", [np.ones(4, np.float32)], [np.ones(4, np.float32)], ["a"])
    tensors, meta = _tensors_and_meta(path)
    tensors["std.00"][1] = float("inf")
    save_file(tensors, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"inf\.safetensors: stds\[0\] holds NaN or Inf"):
        sc.load_s_stats(tmp_path / "inf.safetensors")
