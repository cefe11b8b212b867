"""Exact mode's float32 on CUDA: TF32 off inside our networks' forwards, the host's flags restored afterwards.

The flags are plain process settings, so their handling is tested here without a GPU; the parity tests run on a GPU
with HYPERSTYLE_TEST_DEVICE=cuda (tools/device_check.sh).
"""
from __future__ import annotations

import types

import pytest
import torch

from hyperstyle_core.devices import full_float32, ieee_float32
from hyperstyle_core.nn.encoders import WEncoder
from hyperstyle_core.nn.hypernetwork import HyperNetwork
from hyperstyle_core.nn.stylegan2 import Generator

CUDA = torch.device("cuda")


def _flags() -> tuple[str, str]:
    return torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision


@pytest.fixture()
def host_allows_tf32():
    """A host that asked for TF32 everywhere (as ComfyUI or a user script may); put back as found afterwards."""
    saved = _flags()
    torch.backends.cuda.matmul.fp32_precision = torch.backends.cudnn.conv.fp32_precision = "tf32"
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved


def test_ieee_float32_turns_tf32_off_and_restores_the_hosts_choice(host_allows_tf32):
    with ieee_float32(CUDA):
        assert _flags() == ("ieee", "ieee")
    assert _flags() == ("tf32", "tf32")
    with pytest.raises(KeyError):
        with ieee_float32(CUDA):
            raise KeyError("a failing render")
    assert _flags() == ("tf32", "tf32")


def test_ieee_float32_leaves_other_devices_alone(host_allows_tf32):
    for device in (torch.device("cpu"), torch.device("mps")):
        with ieee_float32(device):
            assert _flags() == ("tf32", "tf32")


def test_full_float32_forward_runs_without_tf32_on_its_module_device(host_allows_tf32):
    seen = []

    class Probe(torch.nn.Module):
        @full_float32
        def forward(self, x):
            seen.append(_flags())
            return x + 1

    probe = Probe()
    assert probe(torch.zeros(1)).item() == 1.0
    assert seen == [("tf32", "tf32")]  # a module without parameters: no device to look at, nothing changed
    probe.weight = torch.nn.Parameter(torch.zeros(1))
    probe(torch.zeros(1))
    assert seen[-1] == ("tf32", "tf32")   # on the CPU: no CUDA flags touched
    fake_cuda = types.SimpleNamespace(device=CUDA)
    probe.parameters = lambda: iter([fake_cuda])
    probe(torch.zeros(1))
    assert seen[-1] == ("ieee", "ieee") and _flags() == ("tf32", "tf32")


@pytest.mark.parametrize("module", [Generator, HyperNetwork, WEncoder])
def test_the_inference_networks_compute_in_full_float32(module):
    assert getattr(module.forward, "__wrapped__", None) is not None, f"{module.__name__}.forward is not wrapped"
