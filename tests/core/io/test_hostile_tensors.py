"""Hostile tensors: stride-0 views (in safetensors, torch and TorchScript files), archive and pickle bombs, NaN and
Inf values, StyleCLIP files that promise more than they hold: refused with a ValueError before any large work.

Every file here is made at test time and is a few KB (the 8 px official-layout generator is 28 MB). Nothing large is
ever allocated: the checks under test refuse before that, and a regression fails on the error message or on a
structural counter, never on timing.
"""
from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from hyperstyle_core import load
from hyperstyle_core.editing import styleclip as sc
from hyperstyle_core.editing.ganspace import load_ganspace
from hyperstyle_core.editing.styleclip.clip_model import read_clip_state_dict
from hyperstyle_core.io.convert import convert
from hyperstyle_core.io.directions import load_direction
from hyperstyle_core.io.formats import read_safetensors_header, write_safetensors
from hyperstyle_core.io.latents import load_latent_file, save_latent
from hyperstyle_core.io.unpickle import read_torchscript_tensors
from hyperstyle_core.nn import configs
from hostile_files import HUGE, official_8px_checkpoint, stride0, tensors_and_meta, tiny_generator_file


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    return tiny_generator_file(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def official_8px():
    return official_8px_checkpoint()


# ---------------------------------------------------------------------------------------------- 4: stride-0 views

def test_stride0_file_is_tiny_and_keeps_its_stride(tmp_path):
    """The premise of the tests below: a 2**31-element tensor saves to about 1 KB and loads as a view."""
    path = tmp_path / "age.pt"
    torch.save(stride0(1, HUGE), path)
    assert path.stat().st_size < 4096
    assert torch.load(path, weights_only=True, mmap=True).stride() == (0, 0)


def test_stride0_direction_is_refused_by_loader_and_converter(tmp_path):
    path = tmp_path / "age.pt"
    torch.save(stride0(1, HUGE), path)
    with pytest.raises(ValueError, match=r"age\.pt: .*views 2147483648 elements of a storage that holds 1"):
        load_direction(path)
    with pytest.raises(ValueError, match=r"views 2147483648 elements"):
        convert(path, tmp_path / "out")
    assert not (tmp_path / "out" / "age.safetensors").exists()


def test_stride0_weights_inside_a_checkpoint_are_named(tmp_path, official_8px):
    """Right shapes, no data: without the check a ~1 KB file converts into a 28 MB one (GBs at full size)."""
    checkpoint = {"g_ema": {k: stride0(*v.shape) for k, v in official_8px["g_ema"].items()},
                  "latent_avg": torch.zeros(8)}
    path = tmp_path / "hollow.pt"
    torch.save(checkpoint, path)
    assert path.stat().st_size < 64 * 1024
    with pytest.raises(ValueError, match=r"hollow\.pt: g_ema\['[a-z0-9_.]+'\]: tensor of shape .* views"):
        convert(path, tmp_path)
    assert not (tmp_path / "hollow.safetensors").exists()


def test_stride0_ganspace_is_refused(tmp_path):
    path = tmp_path / "cars_pca.pt"
    torch.save({"mean": torch.zeros(1, 512), "std": torch.ones(80), "comp": stride0(80, 1, HUGE)}, path)
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
    torch.save({"visual.proj": stride0(HUGE)}, path)
    with pytest.raises(ValueError, match=r"clip_state\.pt: visual\.proj: tensor of shape \[2147483648\]"):
        read_clip_state_dict(path)


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
    tensors, meta = tensors_and_meta(tiny_file)
    tensors["style.1.bias"] = torch.full_like(tensors["style.1.bias"], float("inf"))
    save_file(tensors, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"inf\.safetensors: tensor style\.1\.bias holds NaN or Inf"):
        load(tmp_path / "inf.safetensors", device="cpu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_finite_checks_read_in_chunks_find_the_last_bad_value(tmp_path, monkeypatch, dtype):
    """Load reads the file in chunks (no whole-tensor temporaries, nothing mapped); every chunk is checked."""
    from hyperstyle_core.io import checkpoints
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
    tensors, meta = tensors_and_meta(path)
    tensors["std.00"][1] = float("inf")
    save_file(tensors, str(tmp_path / "inf.safetensors"), metadata=meta)
    with pytest.raises(ValueError, match=r"inf\.safetensors: stds\[0\] holds NaN or Inf"):
        sc.load_s_stats(tmp_path / "inf.safetensors")
