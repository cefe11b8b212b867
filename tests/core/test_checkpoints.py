"""Conversion of every official checkpoint kind, strict loading, and clear errors for bad files."""
from __future__ import annotations

import argparse
import json
import struct

import pytest
import torch
from safetensors.torch import save_file

from conftest import MANIFESTS
from hyperstyle_core import Generator, HyperStyleModel, ReStyleE4EModel, WEncoderModel, load, read_info
from hyperstyle_core.io.convert import convert, detect
from hyperstyle_core.io.unpickle import read_official_checkpoint

# Loss networks (LPIPS AlexNet and its linear layers, IR-SE50, MoCo-v2) are training inputs, not models to convert.
LOSS_NETWORK_KINDS = {"alexnet", "lpips_alex_lin", "ir_se50", "moco_v2"}
ALL_KINDS = sorted(p.stem for p in MANIFESTS.glob("*.json") if p.stem not in LOSS_NETWORK_KINDS)
EXPECTED_KIND = {"hyperstyle": HyperStyleModel, "w_encoder": WEncoderModel, "restyle_e4e": ReStyleE4EModel,
                 "stylegan2": Generator}


def _kind_of(manifest_kind: str) -> str:
    for prefix, kind in (("hyperstyle_", "hyperstyle"), ("restyle_e4e_", "restyle_e4e"), ("stylegan2_", "stylegan2")):
        if manifest_kind.startswith(prefix):
            return kind
    return "w_encoder"


def test_every_manifest_kind_is_covered():
    """13 inference kinds (the released checkpoints and the test-size ones); a new kind must be added on purpose."""
    assert len(ALL_KINDS) == 13
    assert LOSS_NETWORK_KINDS <= {p.stem for p in MANIFESTS.glob("*.json")}


@pytest.mark.parametrize("manifest_kind", ALL_KINDS)
def test_every_kind_converts_and_loads_strictly(manifest_kind, converted, recipe):
    """Convert a recipe-built official checkpoint, load it, and compare every tensor with the recipe."""
    path = converted(manifest_kind)
    assert path.name == f"{manifest_kind}.safetensors"          # the converter keeps the file stem
    info = read_info(path)
    kind = _kind_of(manifest_kind)
    assert info["kind"] == kind
    assert len(info["metadata"]["source_sha256"]) == 64
    model = load(path, device="cpu")
    assert isinstance(model, EXPECTED_KIND[kind])
    assert not model.training
    manifest = json.loads((MANIFESTS / f"{manifest_kind}.json").read_text())
    reference = recipe.make_state_dict(MANIFESTS / f"{manifest_kind}.json")
    ours = dict(model.state_dict())
    if kind == "stylegan2":
        ours["latent_avg"] = model.latent_avg
    aliases = {e["key"] for c in manifest["containers"].values() for e in c if e["rule"] == "alias"}
    assert set(ours) == set(reference) - aliases
    for key, value in reference.items():
        if key in aliases:
            continue
        assert ours[key].shape == value.shape, key
        assert torch.equal(ours[key], value), key
    if kind == "hyperstyle":
        n_layers = len(model.generator.layer_names)
        opts = manifest["opts"]
        assert list(model.config.tuned) == [int(i) for i in opts["layers_to_tune"].split(",") if int(i) < n_layers]
        assert model.input_spec.is_cars == ("cars" in opts["dataset_type"])
        if model.input_spec.is_cars:
            assert (model.input_spec.height, model.input_spec.width) == (192, 256)
            assert model.generator.config.output_crop == (64, 448)


def test_shared_hypernet_is_stored_once(converted):
    header = json.loads(_read_header_bytes(converted("hyperstyle_ffhq_256")))
    assert "hypernet.shared_weight_hypernet.w2" in header
    assert not [k for k in header if ".refinement_blocks." in k and ".hypernet." in k]


def _read_header_bytes(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return f.read(n)


def test_conversion_is_repeatable(converted, recipe, tmp_path):
    """Same source -> same header (metadata, offsets) and byte-identical tensor data (safe to run twice).

    safetensors writes its metadata map in hash order, so the raw header bytes may be permuted.
    """
    src = tmp_path / "gen.pt"
    torch.save(recipe.make_checkpoint(MANIFESTS / "stylegan2_256.json"), src)
    outs = [convert(src, tmp_path / name) for name in ("a", "b")]
    headers = [json.loads(_read_header_bytes(p)) for p in outs]
    assert headers[0] == headers[1]
    data = [p.read_bytes()[8 + len(_read_header_bytes(p)):] for p in outs]
    assert data[0] == data[1]


def test_training_checkpoint_with_namespace_args_converts(recipe, tmp_path):
    """rosinality training checkpoints carry argparse.Namespace args: on the allow-list."""
    ckpt = recipe.make_checkpoint(MANIFESTS / "stylegan2_256.json")
    ckpt["args"] = argparse.Namespace(size=256, channel_multiplier=2)
    ckpt["d"] = {"convs.0.0.weight": torch.zeros(1)}
    src = tmp_path / "train.pt"
    torch.save(ckpt, src)
    out = convert(src, tmp_path)
    assert isinstance(load(out, device="cpu"), Generator)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_converter_refuses_arbitrary_objects(tmp_path):
    src = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "payload": _Evil()}, src)
    with pytest.raises(ValueError, match="safe loader"):
        convert(src, tmp_path)
    assert not (tmp_path / "evil.safetensors").exists()


def test_unknown_layout_lists_known_kinds(tmp_path):
    src = tmp_path / "mystery.pt"
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}, "opts": {}}, src)
    with pytest.raises(ValueError, match=r"unrecognised layout(.|\n)*foo\.weight(.|\n)*hyperstyle(.|\n)*stylegan2"):
        convert(src, tmp_path)


def test_wrong_shapes_are_named(recipe, tmp_path):
    ckpt = recipe.make_checkpoint(MANIFESTS / "stylegan2_256.json")
    ckpt["g_ema"]["conv1.conv.weight"] = torch.zeros(1, 512, 256, 3, 3)
    with pytest.raises(ValueError, match=r"conv1\.conv\.weight \[1, 512, 256, 3, 3\]"):
        detect_and_check(ckpt)


def detect_and_check(ckpt):
    from hyperstyle_core.io.checkpoints import check_strict as _check_strict
    d = detect(ckpt, "x.pt")
    _check_strict(d.kind, d.config, d.tensors, "x.pt")


def test_missing_keys_are_reported(recipe):
    ckpt = recipe.make_checkpoint(MANIFESTS / "stylegan2_256.json")
    del ckpt["g_ema"]["to_rgbs.2.conv.weight"]
    with pytest.raises(ValueError, match=r"missing 1 keys .*to_rgbs\.2\.conv\.weight"):
        detect_and_check(ckpt)


def test_truncated_pt_gives_clear_error(recipe, tmp_path):
    src = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save(recipe.make_checkpoint(MANIFESTS / "stylegan2_256.json"), src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        read_official_checkpoint(src)


# ---------------------------------------------------------------------------------------------- bad converted files

@pytest.fixture(scope="module")
def small_file(converted):
    return converted("stylegan2_256")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist.*convert"):
        load(tmp_path / "nope.safetensors")


def test_truncated_safetensors(small_file, tmp_path):
    bad = tmp_path / "cut.safetensors"
    data = small_file.read_bytes()
    bad.write_bytes(data[: len(data) - 1000])
    with pytest.raises(ValueError, match="truncated"):
        load(bad)


def test_tiny_file_is_not_safetensors(tmp_path):
    bad = tmp_path / "tiny.safetensors"
    bad.write_bytes(b"abc")
    with pytest.raises(ValueError, match="not a safetensors file"):
        load(bad)


def test_corrupt_header(small_file, tmp_path):
    bad = tmp_path / "corrupt.safetensors"
    data = bytearray(small_file.read_bytes())
    data[8:40] = b"\xff" * 32
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load(bad)


def test_pt_file_is_refused_with_conversion_hint(tmp_path):
    pt = tmp_path / "hyperstyle_ffhq.pt"
    pt.write_bytes(b"PK\x03\x04whatever")
    with pytest.raises(ValueError, match=r"never unpickled.*convert hyperstyle_ffhq\.pt"):
        load(pt)


def test_foreign_safetensors_is_refused(tmp_path):
    other = tmp_path / "some_lora.safetensors"
    save_file({"x": torch.zeros(2)}, str(other), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not one written by the hyperstyle_core converter"):
        load(other)


def test_wrong_kind_names_the_file_to_use(small_file):
    with pytest.raises(ValueError, match=r"is a StyleGAN2 generator file, but a HyperStyle model is needed.*"
                                         r"hyperstyle_ffhq\.safetensors"):
        load(small_file, expect="hyperstyle")


def test_tampered_tensor_shapes_are_caught(small_file, tmp_path):
    """A file whose metadata says 256px but whose tensors were swapped fails strict loading with the key named."""
    from safetensors import safe_open
    with safe_open(str(small_file), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    del tensors["to_rgbs.5.bias"]
    bad = tmp_path / "tampered.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match=r"missing 1 keys.*to_rgbs\.5\.bias"):
        load(bad)


def test_cpu_half_precision_is_refused(small_file):
    with pytest.raises(ValueError, match="only supported on a GPU"):
        load(small_file, device="cpu", dtype="float16")


def test_unknown_device_is_refused(small_file):
    with pytest.raises(ValueError, match="unknown device"):
        load(small_file, device="tpu:0")


def test_loaded_generator_renders(small_file):
    g = load(small_file, device="cpu")
    assert g.latent_avg.shape == (512,)
    from hyperstyle_core import generate
    img = generate(g, g.latent_avg[None])
    assert img.shape == (1, 3, 256, 256)
    assert torch.isfinite(img).all()
