"""Encoder conv weights in channels-last on CPU (nn/engine/layout.py): read from the file, same values, same outputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from hyperstyle_core import load, read_info
from hyperstyle_core.io import checkpoints
from hyperstyle_core.io.checkpoints import save_model
from hyperstyle_core.nn.engine.layout import set_conv_weight_layout, spatial_convs
from hyperstyle_core.nn.engine.plan import plan_inference
from hyperstyle_core.testing import make_tiny_models, write_tiny_models

CL = torch.channels_last


@pytest.fixture(scope="module")
def tiny_files(tmp_path_factory):
    return write_tiny_models(tmp_path_factory.mktemp("tiny_layout"), seed=3)


def _plain_state(path):
    """The file's tensors as written (plain layout), read by safetensors itself."""
    from safetensors.torch import load_file
    return load_file(str(path))


@pytest.mark.parametrize("which", [0, 1])
def test_load_on_cpu_reads_spatial_conv_weights_channels_last_from_the_file(tiny_files, which, monkeypatch):
    path = tiny_files[which]
    reads = []
    real_read = checkpoints.read_channels_last
    monkeypatch.setattr(checkpoints, "read_channels_last",
                        lambda *a, **k: reads.append(a[2]) or real_read(*a, **k))
    model = load(path, device="cpu")
    stored = _plain_state(path)
    convs = dict(spatial_convs(model))
    assert convs, "the tiny model has spatial convs"
    assert sorted(reads) == sorted(f"{name}.weight" for name in convs)     # none fell back to a copy of the map
    for name, conv in convs.items():
        assert conv.weight.is_contiguous(memory_format=CL) and not conv.weight.is_contiguous()
        assert torch.equal(conv.weight, stored[f"{name}.weight"])           # same values, new layout
        assert not conv.weight.requires_grad
    one_by_one = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert one_by_one and all(m.weight.is_contiguous() for m in one_by_one)


def test_read_channels_last_declines_a_tensor_of_another_dtype_or_shape(tiny_files):
    path = tiny_files[0]
    header = read_info(path)["header"]
    key = next(k for k, v in header.items() if k.startswith("hypernet.") and len(v["shape"]) == 4
               and v["shape"][0] > 1 and v["shape"][2] > 1)
    like = torch.empty(header[key]["shape"])
    got = checkpoints.read_channels_last(path, header, key, like)
    assert got is not None and torch.equal(got, _plain_state(path)[key]) and got.is_contiguous(memory_format=CL)
    assert checkpoints.read_channels_last(path, header, key, like.double()) is None
    assert checkpoints.read_channels_last(path, header, key, like[:1]) is None
    assert checkpoints.read_channels_last(path, header, "no.such.key", like) is None


def test_truncated_file_is_reported_when_a_weight_is_read(tiny_files, tmp_path):
    path = tiny_files[0]
    header = read_info(path)["header"]
    key, info = max(((k, v) for k, v in header.items() if k != "__metadata__" and len(v["shape"]) == 4),
                    key=lambda kv: kv[1]["data_offsets"][1])
    cut = tmp_path / path.name
    data = path.read_bytes()
    header_len = 8 + int.from_bytes(data[:8], "little")
    cut.write_bytes(data[:header_len + info["data_offsets"][1] - 4])
    with pytest.raises(ValueError, match="truncated inside tensor"):
        checkpoints.read_channels_last(cut, header, key, torch.empty(info["shape"]))


def test_outputs_and_saved_files_do_not_depend_on_the_layout(tiny_files, tmp_path):
    hyperstyle, w_encoder = make_tiny_models(seed=3)
    loaded_hs, loaded_we = load(tiny_files[0], device="cpu"), load(tiny_files[1], device="cpu")
    torch.manual_seed(0)
    x = torch.rand(2, 6, 64, 64) * 2 - 1
    with torch.no_grad():
        plain = hyperstyle.hypernet(x)
        relaid = loaded_hs.hypernet(x)
        for name in plain:
            torch.testing.assert_close(relaid[name], plain[name], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(loaded_we.encoder(x[:, :3]), w_encoder.encoder(x[:, :3]), rtol=1e-5, atol=1e-6)
    again = save_model(loaded_hs, tmp_path / "again.safetensors")
    first, second = _plain_state(tiny_files[0]), _plain_state(again)
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_set_conv_weight_layout_keeps_the_parameter_and_its_values():
    conv = nn.Conv2d(4, 8, 3)
    param = conv.weight
    expected = conv.weight.detach().clone()
    assert plan_inference(torch.device("cpu"), torch.float32).conv_weight_format == CL
    assert plan_inference(torch.device("meta"), torch.float32).conv_weight_format == torch.contiguous_format
    assert set_conv_weight_layout(nn.Sequential(conv, nn.Conv2d(8, 8, 1)), CL) == 1     # the 1x1 is left alone
    assert conv.weight is param and param.is_contiguous(memory_format=CL) and param.requires_grad
    assert torch.equal(param, expected)
    assert set_conv_weight_layout(conv, CL) == 0                                        # already in place
    assert set_conv_weight_layout(conv, torch.contiguous_format) == 1 and param.is_contiguous()
    assert torch.equal(param, expected)


def test_training_puts_the_plain_layout_back(tiny_files):
    """Loading gives CPU models channels-last conv weights; training runs them in the plain layout (oneDNN's AVX2
    1x1 weight-gradient kernel crashed on channels-last activations) and its steps still take gradients."""
    from hyperstyle_core.train.coach import _prepare
    from hyperstyle_core.train.options import TrainOptions
    hyperstyle, w_encoder = load(tiny_files[0], device="cpu"), load(tiny_files[1], device="cpu")
    assert any(c.weight.is_contiguous(memory_format=CL) and not c.weight.is_contiguous()
               for _, c in spatial_convs(hyperstyle))
    loss_fn = nn.Sequential(nn.Conv2d(3, 4, 3))
    loss_fn[0].weight.data = loss_fn[0].weight.data.contiguous(memory_format=CL)
    model, encoder, loss = _prepare(hyperstyle, w_encoder, loss_fn, TrainOptions(), torch.device("cpu"))
    for module in (model, encoder, loss):
        assert all(c.weight.is_contiguous() for _, c in spatial_convs(module))
    x = torch.rand(2, 6, 64, 64)
    out = model.hypernet(x)
    sum(d.square().sum() for d in out.values()).backward()
    assert model.hypernet.conv1.weight.grad is not None
