"""Model pickers list only files of their kind (read from safetensors headers, cached per file version), start on the
official file, and no loader hands back a model of another kind, cached or not."""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import SHARED

GANSPACE_PT = SHARED / "data" / "official" / "editing" / "ganspace" / "cars_pca.pt"
CONVERTED = ["hyperstyle_ffhq.safetensors", "faces_w_encoder.safetensors", "stylegan2-ffhq-config-f.safetensors",
             "toonify.safetensors", "restyle_e4e_ffhq_encode.safetensors", "age.safetensors", "smile.safetensors"]


def _link(src, target):
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.hardlink_to(src)
    except OSError:
        shutil.copy(src, target)


@pytest.fixture()
def folder(pack, models_dir, tmp_path, monkeypatch):
    """A model folder as users fill it: converted models, official .pt downloads (converted or not), StyleCLIP and
    GANSpace files, and things no picker should offer (a README, deltas, a latent, a broken download)."""
    from hyperstyle_pack.hyperstyle_core.io.formats import write_safetensors
    root = tmp_path / "models"
    for name in CONVERTED:
        _link(models_dir / name, root / name)
    _link(models_dir / "smile.safetensors", root / "sub" / "pose.safetensors")
    (root / "README.md").write_text("Put the converted models here.")
    for name in ("hyperstyle_ffhq.pt", "cars_w_encoder.pt", "my_model.pt", "ViT-B-32.pt"):
        (root / name).write_bytes(b"PK\x03\x04 an original pickle/zip checkpoint")
    shutil.copy(GANSPACE_PT, root / "cars_pca.pt")
    clip_state = {"text_projection": torch.zeros(2, 2), "visual.proj": torch.zeros(2, 2)}   # untagged, as other tools
    save_file(clip_state, str(root / "my_clip.safetensors"))
    write_safetensors(root / "s_stats.safetensors", {"mean.00": torch.zeros(2)}, "styleclip_s_stats", {"layers": "[]"})
    write_safetensors(root / "fs3_mine.safetensors", {"delta_i_c": torch.zeros(2, 2)}, "styleclip_channel_directions")
    np.save(root / "fs3.npy", np.zeros((2, 2), np.float32))
    write_safetensors(root / "deltas.safetensors", {"x": torch.zeros(1)}, "weight_deltas")
    write_safetensors(root / "latent.safetensors", {"latent": torch.zeros(1, 2)}, "latent")
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    monkeypatch.setenv("HYPERSTYLE_MODEL_DIRS", str(root))
    monkeypatch.setenv("HYPERSTYLE_DEVICE", "cpu")
    return root


def _options(pack, node_id: str, input_name: str = "model_file") -> tuple[list[str], str | None]:
    files, options = pack.NODE_CLASS_MAPPINGS[node_id].INPUT_TYPES()["required"][input_name]
    return files, options.get("default")


def test_each_picker_lists_only_its_kind(pack, folder):
    assert _options(pack, "HyperStyleLoadModel") == (["hyperstyle_ffhq.safetensors", "my_model.pt"],
                                                     "hyperstyle_ffhq.safetensors")
    assert _options(pack, "HyperStyleLoadWEncoder") == (
        ["cars_w_encoder.pt", "faces_w_encoder.safetensors", "my_model.pt"], "faces_w_encoder.safetensors")
    assert _options(pack, "HyperStyleLoadGenerator") == (
        ["my_model.pt", "stylegan2-ffhq-config-f.safetensors", "toonify.safetensors"],
        "stylegan2-ffhq-config-f.safetensors")
    assert _options(pack, "HyperStyleLoadReStyle") == (["my_model.pt", "restyle_e4e_ffhq_encode.safetensors"],
                                                       "restyle_e4e_ffhq_encode.safetensors")
    assert _options(pack, "HyperStyleLoadDirection") == (
        ["age.safetensors", "my_model.pt", "smile.safetensors", "sub/pose.safetensors"], "age.safetensors")
    assert _options(pack, "HyperStyleLoadGanSpace", "file") == (["cars_pca.pt"], "cars_pca.pt")
    for node_id in ("HyperStyleStyleCLIPEdit", "HyperStyleComputeStyleCLIPDirections"):
        assert _options(pack, node_id, "clip_model") == (["ViT-B-32.pt", "my_clip.safetensors"], "ViT-B-32.pt")
    assert _options(pack, "HyperStyleStyleCLIPEdit", "s_statistics") == (["s_stats.safetensors"], None)
    assert _options(pack, "HyperStyleStyleCLIPEdit", "channel_directions") == (
        ["fs3.npy", "fs3_mine.safetensors"], None)


def test_files_no_picker_takes_are_never_listed_even_if_comfyui_lists_them(pack, folder, monkeypatch):
    from hyperstyle_pack.nodes import _comfy, _files
    everything = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    monkeypatch.setattr(_comfy, "list_model_files", lambda: everything)      # no extension filter at all
    pickers = _files.MODEL_KINDS + ("ganspace", "clip", "styleclip_s_stats", "styleclip_channel_directions")
    listed = set().union(*(_files.files_for(kind) for kind in pickers))
    assert "README.md" in everything
    assert not listed & {"README.md", "deltas.safetensors", "latent.safetensors", "broken.safetensors",
                         "hyperstyle_ffhq.pt"}       # hyperstyle_ffhq.pt: its conversion is there already


def test_choosing_an_original_pt_says_how_to_convert_it(pack, folder):
    verdict = pack.NODE_CLASS_MAPPINGS["HyperStyleLoadWEncoder"].VALIDATE_INPUTS("cars_w_encoder.pt")
    assert "never unpickled" in verdict and "python -m hyperstyle_core convert cars_w_encoder.pt" in verdict


def test_a_file_of_another_kind_is_refused_before_the_graph_runs(pack, folder):
    validate = pack.NODE_CLASS_MAPPINGS["HyperStyleLoadModel"].VALIDATE_INPUTS
    assert validate("faces_w_encoder.safetensors") == (
        "faces_w_encoder.safetensors is a W-encoder file, but a HyperStyle model is needed here. Choose a HyperStyle "
        "model file (e.g. hyperstyle_ffhq.safetensors).")
    assert "holds weight deltas, not a model" in validate("deltas.safetensors")
    assert pack.NODE_CLASS_MAPPINGS["HyperStyleLoadDirection"].VALIDATE_INPUTS("sub/pose.safetensors") is True


def test_the_official_file_is_the_default_in_a_sub_folder_too(pack, folder, monkeypatch):
    from hyperstyle_pack.nodes import _files
    assert _files.default_for("hyperstyle", ["a.safetensors", "faces/hyperstyle_ffhq.safetensors"]) == \
        "faces/hyperstyle_ffhq.safetensors"
    assert _files.default_for("hyperstyle", ["a.safetensors"]) is None


def test_headers_are_read_once_per_file_version(pack, folder, monkeypatch):
    from hyperstyle_pack.nodes import _files
    reads = []
    real = _files.read_safetensors_header
    monkeypatch.setattr(_files, "read_safetensors_header", lambda path: reads.append(path) or real(path))
    _files._safetensors_kind.cache_clear()
    assert "toonify.safetensors" in _files.files_for("stylegan2")
    first = len(reads)
    assert first >= len(CONVERTED)
    assert "toonify.safetensors" in _files.files_for("stylegan2")
    assert len(reads) == first       # listing again reads no header
    toonify = folder / "toonify.safetensors"
    toonify.unlink()
    shutil.copy(folder / "age.safetensors", toonify)       # replaced by a direction: read again
    os.utime(toonify, ns=(1, 1))
    assert "toonify.safetensors" not in _files.files_for("stylegan2")
    assert "toonify.safetensors" in _files.files_for("direction")
    assert len(reads) == first + 1


def test_a_file_cached_by_one_loader_is_not_returned_by_another(pack, folder):
    nodes = pack.NODE_CLASS_MAPPINGS
    (w_encoder,) = nodes["HyperStyleLoadWEncoder"]().execute("faces_w_encoder.safetensors")    # alive: cached
    with pytest.raises(ValueError, match=r"^faces_w_encoder\.safetensors is a W-encoder file, but a HyperStyle model "
                                         r"is needed here\. Choose a HyperStyle model file"):
        nodes["HyperStyleLoadModel"]().execute("faces_w_encoder.safetensors")
    (generator,) = nodes["HyperStyleLoadGenerator"]().execute("toonify.safetensors")
    with pytest.raises(ValueError, match=r"^toonify\.safetensors is a StyleGAN2 generator file, but a latent "
                                         r"direction is needed here"):
        nodes["HyperStyleLoadDirection"]().execute("toonify.safetensors")
    assert nodes["HyperStyleLoadWEncoder"]().execute("faces_w_encoder.safetensors")[0] is w_encoder


def test_whatever_the_cache_returns_is_checked(pack, folder, monkeypatch):
    """Even a cache key that confused kinds could not hand a W-encoder to the HyperStyle loader."""
    from hyperstyle_pack.nodes import loaders
    monkeypatch.setattr(loaders, "_cache_key", lambda path, device, precision, kind: (str(path), precision))
    nodes = pack.NODE_CLASS_MAPPINGS
    (w_encoder,) = nodes["HyperStyleLoadWEncoder"]().execute("faces_w_encoder.safetensors")
    with pytest.raises(ValueError, match=r"^faces_w_encoder\.safetensors is a W-encoder file, but a HyperStyle model "
                                         r"is needed here"):
        nodes["HyperStyleLoadModel"]().execute("faces_w_encoder.safetensors")
    assert w_encoder is not None
