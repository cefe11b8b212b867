"""The one registry of official files: every file has a kind the converter makes of it, every kind a default file,
every name it is known under leads back to it, and what loaders and pickers start on comes from it."""
from __future__ import annotations

from pathlib import PurePath

import pytest
import torch
from conftest import SHARED, original_loss_checkpoint

from hyperstyle_core import DEFAULT_FILES, KIND_TITLES, KINDS, convert, read_info
from hyperstyle_core.io import checkpoints
from hyperstyle_core.io.download import _resolve
from hyperstyle_core.io.registry import MODEL_KINDS, REGISTRY, default_files, official_names, original_file_kind
from hyperstyle_core.nn.configs import MODEL_CONFIGS
from hyperstyle_core.nn.loss_networks import LOSS_NETWORK_KINDS

DIRECTIONS = SHARED / "data" / "official" / "editing" / "interfacegan"


def _stems(entry) -> tuple[str, ...]:
    return (entry.name, PurePath(entry.filename).stem, *entry.aliases)


def test_kinds_are_what_load_can_build():
    assert set(KINDS) == set(MODEL_CONFIGS) | {"direction"} | set(LOSS_NETWORK_KINDS)
    assert set(KIND_TITLES) == set(DEFAULT_FILES) == set(KINDS) == set(MODEL_KINDS)
    # io.checkpoints reads the same tables (the loaders' and the converter's messages)
    assert checkpoints.KINDS is KINDS and checkpoints.KIND_TITLES is KIND_TITLES
    assert checkpoints.DEFAULT_FILES is DEFAULT_FILES


def test_every_official_file_has_a_kind_and_every_kind_a_default_file():
    for entry in REGISTRY.values():
        assert entry.kind in KINDS, entry.name
        assert PurePath(entry.filename).stem == entry.name       # `hyperstyle download` converts to <name>
    for kind, model_kind in MODEL_KINDS.items():
        assert REGISTRY[model_kind.default].kind == kind
        assert DEFAULT_FILES[kind] == f"{model_kind.default}.safetensors"
        assert model_kind.default in official_names(kind)
    assert official_names("direction") == ("age", "smile", "pose")
    assert official_names("stylegan2")[0] == "stylegan2-ffhq-config-f" and "toonify" in official_names("stylegan2")
    assert official_names("clip") == ()


def test_every_name_of_an_official_file_leads_to_its_kind():
    owner: dict[str, str] = {}
    for entry in REGISTRY.values():
        for stem in _stems(entry):
            assert owner.setdefault(stem, entry.name) == entry.name, f"{stem} names two files"
            assert original_file_kind(stem) == entry.kind
    # the names the loss networks' projects release them under, beside the names `hyperstyle download` saves
    assert original_file_kind("alexnet-owt-7be5be79") == original_file_kind("alexnet") == "alexnet"
    assert original_file_kind("alex") == original_file_kind("lpips_alex") == "lpips_alex_lin"
    assert original_file_kind("moco_v2_800ep_pretrain.pth") == "moco_v2"      # moco_v2_800ep_pretrain.pth.tar
    # files that load as they are released
    assert original_file_kind("cars_pca") == original_file_kind("my_faces_pca") == "ganspace"
    assert original_file_kind("ViT-B-32") == original_file_kind("RN50x4") == "clip"
    assert original_file_kind("my_model") is None and original_file_kind("hyperstyle") is None


def test_default_files_per_kind():
    assert default_files("hyperstyle") == ("hyperstyle_ffhq.safetensors",)
    assert default_files("w_encoder") == ("faces_w_encoder.safetensors",)
    assert default_files("lpips_alex_lin") == ("lpips_alex.safetensors",)
    assert default_files("clip") == ("ViT-B-32.safetensors", "ViT-B-32.pt")
    assert default_files("ganspace") == ("cars_pca.pt",)
    assert default_files("weight_deltas") == ()
    assert checkpoints.wrong_kind_message("x.safetensors", "w_encoder", "hyperstyle").endswith(
        "(e.g. hyperstyle_ffhq.safetensors).")


@pytest.mark.parametrize("manifest, name", [("faces_w_encoder_256", "faces_w_encoder"), ("stylegan2_256", "toonify")])
def test_the_converter_makes_the_registered_kind(converted, manifest, name):
    assert read_info(converted(manifest))["kind"] == REGISTRY[name].kind


def test_a_file_under_its_released_name_converts_to_the_kind_that_name_says(recipe, tmp_path):
    torch.save(original_loss_checkpoint(recipe, "lpips_alex_lin"), tmp_path / "alex.pth")    # LPIPS' own name
    assert read_info(convert(tmp_path / "alex.pth", tmp_path))["kind"] == original_file_kind("alex")


def test_official_directions_convert_to_their_registered_kind(tmp_path):
    for name in official_names("direction"):
        assert read_info(convert(DIRECTIONS / f"{name}.pt", tmp_path))["kind"] == REGISTRY[name].kind == "direction"


def test_a_mirrored_download_keeps_what_the_registry_knows():
    entry = _resolve("alexnet", None, None, None, "http://mirror.example/files/")
    assert entry.urls == ("http://mirror.example/files/alexnet.pth",)
    assert (entry.kind, entry.aliases) == ("alexnet", ("alexnet-owt-7be5be79",))
    custom = _resolve("my_net", "https://example.com/my_net.pt", None, None, None)
    assert custom.kind is None and custom.aliases == ()
