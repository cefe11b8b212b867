"""The one file-format layer: one tag namespace and version key, deterministic bytes, and every file written by
release 0.1 (tests/fixtures/formats_0_1, made by make_fixtures.py with that release) still loads."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from hyperstyle_core import WeightDeltas, load, load_direction, read_info
from hyperstyle_core.editing import styleclip as sc
from hyperstyle_core.editing.ganspace import load_ganspace, save_ganspace
from hyperstyle_core.face.info import AlignmentInfo
from hyperstyle_core.io.checkpoints import save_model
from hyperstyle_core.io.directions import save_direction
from hyperstyle_core.io.formats import (FORMATS, check_format, format_name, read_safetensors_metadata,
                                        write_safetensors)
from hyperstyle_core.io.latents import load_latent_file, save_latent
from hyperstyle_core.nn.stylegan2 import Generator

OLD = Path(__file__).resolve().parents[2] / "fixtures" / "formats_0_1"


def test_release_0_1_files_are_old_format_files():
    """The fixtures really are the old layout (two prefixes, two version keys), so the tests below mean something."""
    tags = {p.name: read_safetensors_metadata(p)["format"] for p in OLD.glob("*.safetensors")}
    assert tags["checkpoint_stylegan2.safetensors"] == "hyperstyle_core.checkpoint"
    assert tags["ganspace.safetensors"] == "hyperstyle_core.ganspace"
    assert "format_version" in read_safetensors_metadata(OLD / "direction.safetensors")
    assert tags["latent.safetensors"] == "hyperstyle.latent"
    assert len(tags) == 8


def test_release_0_1_checkpoint_and_direction_load():
    generator = load(OLD / "checkpoint_stylegan2.safetensors", device="cpu")
    assert isinstance(generator, Generator) and generator.size == 8
    assert read_info(OLD / "checkpoint_stylegan2.safetensors")["kind"] == "stylegan2"
    direction = load_direction(OLD / "direction.safetensors")
    assert direction.vector.shape == (1, 8)
    assert torch.equal(load(OLD / "direction.safetensors", device="cpu", expect="direction").vector, direction.vector)


def test_release_0_1_deltas_latent_ganspace_alignment_load():
    deltas = WeightDeltas.load(OLD / "deltas.safetensors")
    assert deltas.batch_size == 1 and deltas.signature.size == 8 and len(deltas) == len(deltas.signature.layers)
    tensors = load_latent_file(OLD / "latent.safetensors")
    assert set(tensors) == {"latent", "restyle_latent"} and tensors["latent"].shape[-1] == 8
    directions = load_ganspace(OLD / "ganspace.safetensors")
    assert directions.n_components == 3 and directions.comp.shape == (3, 1, 8)
    info = AlignmentInfo.from_dict(json.loads((OLD / "alignment.json").read_text()))
    assert info.source_width == 1024 and info.output_size == 1024


def test_release_0_1_styleclip_files_load():
    means, stds = sc.load_s_stats(OLD / "s_stats.safetensors")
    assert len(means) == 3 and all(s.shape == (4,) for s in stds)
    delta_i_c, layers = sc.load_channel_directions(OLD / "channel_directions.safetensors")
    assert delta_i_c.shape == (6, 4) and layers == ["a", "b"]
    pytest.importorskip("clip", reason="openai-clip is in requirements.txt")
    model = sc.load_clip(OLD / "clip.safetensors")
    assert model.visual.input_resolution == 16


def _writers(tmp: Path) -> dict[str, Path]:
    """One file of every safetensors format, written by today's code."""
    torch.manual_seed(0)
    generator = Generator(load(OLD / "checkpoint_stylegan2.safetensors", device="cpu").config)
    deltas = WeightDeltas.load(OLD / "deltas.safetensors")
    out = {
        "checkpoint": save_model(generator, tmp / "model.safetensors"),
        "weight_deltas": tmp / "deltas.safetensors",
        "latent": save_latent(tmp / "latent.safetensors", torch.randn(1, 4, 8)),
        "ganspace": save_ganspace(load_ganspace(OLD / "ganspace.safetensors"), tmp / "ganspace.safetensors"),
        "styleclip_s_stats": sc.save_s_stats(tmp / "s.safetensors", [np.ones(2, np.float32)],
                                             [np.ones(2, np.float32)], ["a"]),
        "styleclip_channel_directions": sc.save_channel_directions(tmp / "c.safetensors", torch.ones(2, 3),
                                                                   ["a"], [2]),
    }
    deltas.save(out["weight_deltas"])
    save_direction(load_direction(OLD / "direction.safetensors"), tmp / "direction.safetensors")
    return out


def test_every_format_uses_one_namespace_and_version_key(tmp_path):
    written = _writers(tmp_path)
    written["direction"] = tmp_path / "direction.safetensors"
    for name, path in written.items():
        meta = read_safetensors_metadata(path)
        expected = "checkpoint" if name == "direction" else name
        assert meta["format"] == f"hyperstyle.{expected}", name
        assert meta["version"] == str(FORMATS[expected][0]) and "format_version" not in meta, name
        assert format_name(meta) == expected


def test_files_are_deterministic_and_readable_by_safetensors(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    a, b = _writers(first), _writers(second)
    for name in a:
        assert a[name].read_bytes() == b[name].read_bytes(), name
    tensors = {"b": torch.arange(6, dtype=torch.float16).reshape(2, 3), "a": torch.tensor([True, False]),
               "c": torch.zeros(0), "d": torch.tensor(3.5, dtype=torch.bfloat16)}
    path = write_safetensors(tmp_path / "mixed.safetensors", tensors, "latent", {"note": "x"})
    with safe_open(str(path), "pt") as f:
        assert f.metadata() == {"format": "hyperstyle.latent", "version": "1", "note": "x"}
        for key, value in tensors.items():
            assert torch.equal(f.get_tensor(key), value), key


def test_wrong_format_and_newer_version_are_refused_with_a_hint(tmp_path):
    latent = save_latent(tmp_path / "latent.safetensors", torch.zeros(1, 4, 8))
    with pytest.raises(ValueError, match=r"latent\.safetensors is not a weight-deltas file \(it is a latent file\)"):
        WeightDeltas.load(latent)
    with pytest.raises(ValueError, match="reads versions up to 1. Update hyperstyle_core"):
        check_format({"format": "hyperstyle.latent", "version": "2"}, "latent", "x.safetensors", "save it again")
    with pytest.raises(ValueError, match="reserved"):
        write_safetensors(tmp_path / "x.safetensors", {}, "latent", {"version": "9"})
