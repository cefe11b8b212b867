"""The inference plan's rules: what the engine does on which device, for which batch and shape."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from hyperstyle_core.nn.engine import plan as plan_module
from hyperstyle_core.nn.engine.plan import InferencePlan, plan_inference

CPU, META = torch.device("cpu"), torch.device("meta")     # meta stands in for any non-CPU device


def test_cpu_and_other_devices_get_their_own_layouts_and_forms():
    cpu, other = plan_inference(CPU, torch.float32), plan_inference(META, torch.float32)
    assert cpu.feature_format == cpu.conv_weight_format == torch.channels_last
    assert other.feature_format == other.conv_weight_format == torch.contiguous_format
    assert cpu.separable_skips and not other.separable_skips
    assert other.per_sample_min_area is None and other.strip_min_bytes is None
    assert other.first_product == "addmm" and other.output_groups(360, 1) == 1
    assert not cpu.int8_products and cpu.low_precision is None and cpu.preview_size is None   # exact mode


def test_batches_run_blocks_of_256_px_and_more_one_sample_at_a_time():
    plan = plan_inference(CPU, torch.float32)
    assert plan.first_per_sample_block(batch=2, n_blocks=8) == 5           # block 5 draws 256 px (2**(5+3))
    assert plan.first_per_sample_block(batch=1, n_blocks=8) == 8           # a single sample: no split
    assert plan.first_per_sample_block(batch=4, n_blocks=3) == 3           # a 32-px generator: none large enough
    assert plan_inference(META, torch.float32).first_per_sample_block(batch=4, n_blocks=8) == 8


def test_single_samples_run_blocks_with_maps_of_32_mib_and_more_in_strips():
    plan = plan_inference(CPU, torch.float32)
    assert plan.block_in_strips(1, 32, 1024, 1024, 4)                      # FFHQ 1024-px block: 128 MiB maps
    assert plan.block_in_strips(1, 128, 256, 256, 4)                       # 256 px at 128 channels: 32 MiB
    assert not plan.block_in_strips(1, 256, 128, 128, 4)                   # 16 MiB: whole
    assert not plan.block_in_strips(2, 32, 1024, 1024, 4)                  # packed batches keep whole blocks
    assert not plan_inference(META, torch.float32).block_in_strips(1, 32, 1024, 1024, 4)


def test_output_layer_row_groups_follow_threads_rows_and_batch(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    plan = plan_inference(CPU, torch.float32)
    assert plan.threads == 4
    assert plan.output_groups(360, 1) == 4
    assert plan.output_groups(30, 1) == 3                 # 4 does not divide 30
    assert plan.output_groups(7, 1) == 1                  # prime row count: no split
    assert plan.output_groups(360, 2) == 1                # two samples: a matrix product, threaded already


@pytest.mark.parametrize("capability, rows, form", [("AVX512", 9, "tall_skinny"), ("AVX512", 36, "tall_skinny"),
                                                   ("AVX2", 9, "row_blocks"), ("AVX2", 18, "row_blocks"),
                                                   ("AVX2", 36, "addmm"), ("DEFAULT", 9, "row_blocks")])
def test_first_product_form_follows_the_instruction_set_and_rows(monkeypatch, capability, rows, form):
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert plan_inference(CPU, torch.float32).first_product_form(rows) == form
    assert plan_inference(META, torch.float32).first_product_form(rows) == "addmm"


def test_fast_mode_picks_bf16_copies_where_bf16_is_native_else_int8_products(monkeypatch):
    monkeypatch.setattr(plan_module, "bf16_supported", lambda device: True)
    bf16 = plan_inference(CPU, torch.float32, fast=True, size=1024)
    assert bf16.low_precision == torch.bfloat16 and not bf16.int8_products and bf16.preview_size == 256
    monkeypatch.setattr(plan_module, "bf16_supported", lambda device: False)
    int8 = plan_inference(CPU, torch.float32, fast=True, size=256)
    assert int8.low_precision is None and int8.int8_products and int8.preview_size is None   # 256 px: no preview
    assert not plan_inference(CPU, torch.float32, fast=False, size=1024).int8_products


def test_the_plan_is_a_frozen_value():
    plan = plan_inference(CPU, torch.float32)
    assert isinstance(plan, InferencePlan)
    with pytest.raises(AttributeError):
        plan.threads = 3
    assert replace(plan, strip_min_bytes=None).strip_min_bytes is None and plan.strip_min_bytes is not None
