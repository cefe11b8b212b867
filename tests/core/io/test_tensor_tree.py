"""Nested state (a training run's resume state) round-trips through safetensors without pickle; other or damaged
files are refused with what to do."""
from __future__ import annotations

import json
import random
import struct

import pytest
import torch

from hyperstyle_core.io.formats import write_safetensors
from hyperstyle_core.io.tensor_tree import read_tensor_tree, write_tensor_tree


def test_optimizer_and_rng_state_round_trip(tmp_path):
    p = torch.nn.Parameter(torch.randn(3, 2))
    opt = torch.optim.Adam([p], lr=1e-3, betas=(0.9, 0.999))
    p.grad = torch.ones_like(p)
    opt.step()
    tree = {"optimizer": opt.state_dict(), "python": random.getstate(), "torch": torch.get_rng_state(),
            "best": None, "flag": True, "ratio": 0.25, "name": "x", "nested": [1, (2, "3"), {"k": torch.zeros(())}]}
    path = write_tensor_tree(tmp_path / "state.safetensors", tree, "training_state")
    back = read_tensor_tree(path, "training_state", hint="start a new run")
    state = back["optimizer"]["state"]
    assert list(state) == [0]                                    # int keys stay ints (load_state_dict needs them)
    assert torch.equal(state[0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert back["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.999)
    random.setstate(back["python"])                               # tuples stay tuples: setstate accepts it
    assert torch.equal(back["torch"], tree["torch"]) and back["torch"].dtype == torch.uint8
    assert back["best"] is None and back["flag"] is True and back["ratio"] == 0.25 and back["name"] == "x"
    assert back["nested"][1] == (2, "3") and back["nested"][2]["k"].shape == ()
    opt2 = torch.optim.Adam([torch.nn.Parameter(p.detach().clone())], lr=1e-3)
    opt2.load_state_dict(back["optimizer"])


def test_objects_that_are_not_plain_data_are_refused(tmp_path):
    with pytest.raises(ValueError, match="a object cannot be stored"):
        write_tensor_tree(tmp_path / "s.safetensors", {"x": object()}, "training_state")
    assert not (tmp_path / "s.safetensors").exists()


def test_other_and_damaged_files_are_refused(tmp_path):
    other = write_safetensors(tmp_path / "deltas.safetensors", {"a": torch.zeros(1)}, "weight_deltas")
    with pytest.raises(ValueError, match="start a new run"):
        read_tensor_tree(other, "training_state", hint="start a new run")
    bad = write_safetensors(tmp_path / "bad.safetensors", {"t/0": torch.zeros(1)}, "training_state",
                            {"tree": json.dumps({"__tensor__": "t/9"})})        # names a tensor that is not there
    with pytest.raises(ValueError, match=r"bad\.safetensors is damaged .*start a new run"):
        read_tensor_tree(bad, "training_state", hint="start a new run")
    planted = write_safetensors(tmp_path / "planted.safetensors", {}, "training_state",
                                {"tree": json.dumps({"__reduce__": ["os.system", "echo"]})})
    with pytest.raises(ValueError, match="unexpected entry"):
        read_tensor_tree(planted, "training_state", hint="start a new run")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(struct.pack("<Q", 1000) + b"{")
    with pytest.raises(ValueError):
        read_tensor_tree(truncated, "training_state", hint="start a new run")
