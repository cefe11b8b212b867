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
from hyperstyle_core.nn.loss_networks import IRSE50, AlexNetFeatures, LPIPSLinear, MoCoResNet50

# The loss networks of training (LPIPS AlexNet and its linear layers, IR-SE50, MoCo-v2), in their original layouts.
LOSS_NETWORK_KINDS = {"alexnet", "lpips_alex_lin", "ir_se50", "moco_v2"}
ALL_KINDS = sorted(p.stem for p in MANIFESTS.glob("*.json"))
EXPECTED_KIND = {"hyperstyle": HyperStyleModel, "w_encoder": WEncoderModel, "restyle_e4e": ReStyleE4EModel,
                 "stylegan2": Generator, "ir_se50": IRSE50, "alexnet": AlexNetFeatures, "lpips_alex_lin": LPIPSLinear,
                 "moco_v2": MoCoResNet50}
MOCO_PREFIX = "module.encoder_q."


def _kind_of(manifest_kind: str) -> str:
    if manifest_kind in LOSS_NETWORK_KINDS:
        return manifest_kind
    for prefix, kind in (("hyperstyle_", "hyperstyle"), ("restyle_e4e_", "restyle_e4e"), ("stylegan2_", "stylegan2")):
        if manifest_kind.startswith(prefix):
            return kind
    return "w_encoder"


def test_every_manifest_kind_is_covered():
    """13 inference kinds (the released checkpoints and the test-size ones) and 4 loss networks; a new kind must be
    added on purpose."""
    assert len(ALL_KINDS) == 17
    assert LOSS_NETWORK_KINDS <= set(ALL_KINDS)


@pytest.fixture(scope="module")
def converted_any(converted, recipe, tmp_path_factory):
    """`converted`, plus the loss networks: plain state dicts (MoCo: {'state_dict': ...}) as their official files
    hold them, which the shared fixture's make_checkpoint does not write."""
    folder, done = tmp_path_factory.mktemp("loss_networks"), {}

    def convert_kind(manifest_kind: str):
        if manifest_kind not in LOSS_NETWORK_KINDS:
            return converted(manifest_kind)
        if manifest_kind not in done:
            sd = recipe.make_state_dict(MANIFESTS / f"{manifest_kind}.json")
            src = folder / f"{manifest_kind}.pt"
            torch.save({"state_dict": sd} if manifest_kind == "moco_v2" else sd, src)
            done[manifest_kind] = convert(src, folder / "converted")
            src.unlink()
        return done[manifest_kind]
    return convert_kind


def _as_converted(manifest_kind: str, reference: dict) -> dict:
    """Recipe keys as the converted file holds them: what the official criteria/ use (AlexNet without its
    classifier, MoCo's query encoder without fc and its prefix)."""
    if manifest_kind == "alexnet":
        return {k: v for k, v in reference.items() if not k.startswith("classifier.")}
    if manifest_kind == "moco_v2":
        return {k.removeprefix(MOCO_PREFIX): v for k, v in reference.items() if not k.startswith(MOCO_PREFIX + "fc.")}
    return reference


@pytest.mark.parametrize("manifest_kind", [          # the everyday subset converts the small kinds only
    pytest.param(kind, marks=pytest.mark.slow) if kind.endswith(("_512", "_1024")) or kind.startswith(
        ("hyperstyle_", "restyle_")) else kind for kind in ALL_KINDS])
def test_every_kind_converts_and_loads_strictly(manifest_kind, converted_any, recipe):
    """Convert a recipe-built official checkpoint, load it, and compare every tensor with the recipe."""
    path = converted_any(manifest_kind)
    assert path.name == f"{manifest_kind}.safetensors"          # the converter keeps the file stem
    info = read_info(path)
    kind = _kind_of(manifest_kind)
    assert info["kind"] == kind
    assert len(info["metadata"]["source_sha256"]) == 64
    model = load(path, device="cpu")
    assert isinstance(model, EXPECTED_KIND[kind])
    assert not model.training
    manifest = json.loads((MANIFESTS / f"{manifest_kind}.json").read_text())
    reference = _as_converted(manifest_kind, recipe.make_state_dict(MANIFESTS / f"{manifest_kind}.json"))
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


def test_released_moco_file_keeps_only_the_query_encoder(recipe, tmp_path):
    """The released MoCo-v2 file also holds the key encoder, the queue, the epoch and the optimizer state: the
    converter keeps encoder_q minus fc (criteria/moco_loss.py), and refuses nothing of what torch.save wrote."""
    sd = recipe.make_state_dict(MANIFESTS / "moco_v2.json")
    sd.update({"module.encoder_k.conv1.weight": torch.zeros(64, 3, 7, 7), "module.queue": torch.zeros(128, 8),
               "module.queue_ptr": torch.zeros(1, dtype=torch.long)})
    src = tmp_path / "moco_v2_800ep_pretrain.pt"
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": sd,
                "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                              "param_groups": [{"lr": 0.03, "momentum": 0.9, "params": [0]}]}}, src)
    model = load(convert(src, tmp_path), device="cpu", expect="moco_v2")
    assert isinstance(model, MoCoResNet50)
    assert torch.equal(model.conv1.weight, sd[MOCO_PREFIX + "conv1.weight"])
    assert not [k for k in model.state_dict() if k.startswith(("fc.", "module."))]


def test_loss_network_file_with_a_config_is_refused(converted_any, tmp_path):
    """Loss networks have fixed architectures: a stored config with fields is not one this release wrote."""
    from safetensors import safe_open
    with safe_open(str(converted_any("lpips_alex_lin")), "pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    meta["config"] = json.dumps({"layers": 7})
    bad = tmp_path / "alex.safetensors"
    save_file(tensors, str(bad), metadata=meta)
    with pytest.raises(ValueError, match=r"invalid perceptual-loss calibration .* config: the lpips_alex_lin config "
                                         r"must be an empty JSON object"):
        load(bad)


def test_wrong_loss_network_kind_is_named(converted_any):
    with pytest.raises(ValueError, match=r"is a perceptual-loss calibration \(LPIPS linear layers\) file, but a "
                                         r"face-identity network \(IR-SE50, ID loss\) is needed.*model_ir_se50"):
        load(converted_any("lpips_alex_lin"), expect="ir_se50")


@pytest.mark.slow                  # converts the 256-px official-width model
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
