"""One training step against the OFFICIAL coach, in float64 (every tensor, tightly) and in float32 (what float32
rounding cannot move).

Both references were produced outside this repository by the official code (yuval-alaluf/hyperstyle @ a723c73) on
CPU: models/hyperstyle.py:HyperStyle built from recipe checkpoints (hyperstyle_ffhq_256 with the refinement blocks
of layers 5, 11 (shared hypernet), 17, 18; faces_w_encoder_256), training/coach_hyperstyle.py:Coach.perform_forward_
on_batch and calc_loss called unbound on a stand-in coach with the official LPIPS-alex and IDLoss on recipe loss
networks, `net.train()`, then training/ranger.py:Ranger(lr 1e-4).step(). Shims only (no change to the math): CPU for
.cuda(), native fused_leaky_relu / upfirdn2d (the official upfirdn2d_native), no downloads (torchvision models with
recipe weights). Input: x = y = cat(expected_256 input, iter3.image); 2 iterations per batch; lambdas l2 1, lpips 0.8,
id 0.1.

- tests/fixtures/official_train_step_f64.json: that step with every model, loss network, input and the optimiser
  state in float64 (`.to(float64)` on the modules and latent_avg; the stand-in coach's parse_batch keeps the dtype
  where the official one casts the batch with .float(); Ranger's two `.float()` casts made float64 casts). It holds
  every iteration's loss_dict; for each hypernet parameter its gradient and its update (after minus before the
  step), each as numel, norm, abs max, sum, 16 chunk sums (torch.tensor_split of the flat tensor), the projection
  on the weights frac(i * 0.6180339887498949) - 0.5 and 8 sampled entries, plus the parameter after the step at
  those entries; the BatchNorm statistics after the step in the same summary.
- tests/fixtures/official_train_step.json: the float32 step (on an AVX2 CPU): every iteration's loss_dict, for
  each hypernet parameter its gradient's norm, abs max, 5 sampled entries and 8 chunk sums, the parameter after the
  step at those entries, and the sums of the BatchNorm statistics.

Why two precisions: in float32 a (Leaky)ReLU input within rounding of 0 lands on different sides on different CPUs
and GPUs and switches one channel's gradient path, and the backbone's gradients carry float32 rounding of ~1% of
their norm (train-mode BatchNorm on a batch of 2), so single tensors differ between machines. In float64 neither
happens, so every tensor is compared tightly there; float32 is gated on the losses, the gradients as a whole, the
layers with no activation between them and the loss, the parameters after the step and the BatchNorm statistics.
The models run on HYPERSTYLE_TEST_DEVICE (cpu, or cuda in tools/device_check.sh).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file

from conftest import MANIFESTS, OFFICIAL, REPO, TEST_DEVICE
from hyperstyle_core.devices import ieee_float32
from hyperstyle_core.nn.hypernetwork import HyperNetConfig
from hyperstyle_core.nn.networks import HyperStyleModel, InputSpec, WEncoderModel
from hyperstyle_core.nn.stylegan2 import GeneratorConfig
from hyperstyle_core.train.losses import LossWeights, load_losses
from hyperstyle_core.train.optim import make_optimizer
from hyperstyle_core.train.step import train_step

pytestmark = pytest.mark.slow          # each precision builds the full 256 models and runs a training step

FIXTURES = REPO / "tests" / "fixtures"
REF64 = json.loads((FIXTURES / "official_train_step_f64.json").read_text())
REF32 = json.loads((FIXTURES / "official_train_step.json").read_text())
EXACT_PATH = ("shared_weight_hypernet.", ".linear.", ".output.")     # no activation between them and the loss
SUMMARY_CHUNKS = 16                     # chunk sums per tensor in the float64 fixture
PROJECTION_STEP = 0.6180339887498949    # weights frac(i * PROJECTION_STEP) - 0.5, as the float64 fixture
PROJECTION_BLOCK = 1 << 22              # entries per block while projecting (bounds the temporary weights)
STEP_BLOCK_BYTES = 64 * 2 ** 20         # parameter rows per optimiser step (bounds the optimiser state)

# float64: every measure of every tensor must be what ||ours - official|| <= F64_TOL * ||official|| allows
# (Cauchy-Schwarz: an entry or a norm moves at most that much, a sum of m entries sqrt(m) times it).
# Measured on CPU: ours and the official step differ by at most 5.5e-14 of a gradient's norm (losses 2.2e-16,
# BatchNorm statistics 1.8e-15); an input moved by 1e-12 moves the gradients by at most 5.3e-11 of their norm,
# smoothly (no activation switches sides). A loss weight off by 1e-3 moves them by 3e-4 of their norm.
F64_TOL = 1e-9
F64_EPS = torch.finfo(torch.float64).eps

# float32: tenfold margins over the largest difference measured between three float32 runs (the fixture's AVX2 CPU;
# ours and the official code on an AVX-512 BF16 CPU) and the float64 truth:
# - losses: 2e-7.
LOSS_TOL = 2e-6
# - total gradient norm: 8e-4; 1 - cosine of all gradients (as the chunk sums of every tensor, concatenated):
#   4.6e-5. Both are sums over the whole model, which single channels cannot move.
TOTAL_NORM_TOL = 1e-2
WHOLE_COSINE_MIN = 1 - 5e-4
# - the layers with no activation between them and the loss: sampled entries 5.6e-5 of the gradient's abs max,
#   norms 2e-5, chunk sums 7.5e-4 of the norm.
EXACT_PATH_TOL = 5e-4                   # of the gradient's abs max, per entry
EXACT_PATH_NORM_TOL = 2e-4
EXACT_PATH_CHUNK_TOL = 1e-2             # of the gradient's norm, per chunk sum
# - parameters after the step: the first Ranger step moves each parameter by lr x its centralised gradient, so
#   after the step they differ by their float32 rounding (2 units in the last place) plus lr x the gradients'
#   difference: within EXACT_PATH_TOL on the exact path (twice, for the centralising mean), and at most the
#   gradient's abs max elsewhere (measured: 0.37 of it).
UPDATE_SLACK = 1.0


def _manifest_tensors(recipe, kind: str, keys) -> dict[str, torch.Tensor]:
    manifest = json.loads((MANIFESTS / f"{kind}.json").read_text())
    entries = {e["key"]: e for c in manifest["containers"].values() for e in c}
    entries.update({e["key"]: e for e in manifest.get("top_level", {}).values()})
    return {k: recipe.make_tensor(entries[k]) for k in keys}


# ------------------------------------------------------------------------------------------------ the step

@dataclass
class StepRecord:
    """What one training step produced, summarised as the fixtures record it."""
    losses: list[dict[str, float]]          # the official loss_dict of every iteration
    params: dict[str, dict]                 # name -> the summaries asked for (gradient, update, after)
    buffers: dict[str, torch.Tensor]        # the hypernet's BatchNorm buffers after the step (CPU)


GradSummary = Callable[[str, torch.Tensor], dict]                       # (name, gradient) -> summary
UpdateSummary = Callable[[str, torch.Tensor, torch.Tensor], dict]       # (name, before, after) -> summary


def _train_step(recipe, loss_models, dtype: torch.dtype, on_grad: GradSummary,
                on_update: UpdateSummary) -> StepRecord:
    """Our train_step on the fixtures' setup in `dtype` on TEST_DEVICE, each tensor summarised on the way."""
    setup = REF64["setup"]
    device = torch.device(TEST_DEVICE)
    model = HyperStyleModel(HyperNetConfig(GeneratorConfig(256), layers_to_tune=tuple(setup["layers_to_tune"])),
                            InputSpec())
    model.load_state_dict(_manifest_tensors(recipe, "hyperstyle_ffhq_256", model.state_dict()), strict=True)
    w_encoder = WEncoderModel(GeneratorConfig(256), InputSpec())
    w_encoder.load_state_dict(_manifest_tensors(recipe, "faces_w_encoder_256", w_encoder.state_dict()), strict=True)
    loss_fn = load_losses(LossWeights(**setup["lambdas"]), loss_models)
    for module in (model, w_encoder, loss_fn):
        module.to(device, dtype)
    model.requires_grad_(False)
    model.hypernet.requires_grad_(True).train()
    w_encoder.eval().requires_grad_(False)
    optimizer = make_optimizer(model.hypernet.parameters(), setup["optimizer"], setup["lr"])
    params: dict[str, dict] = {}

    def step_in_row_blocks(closure=None):  # noqa: ANN001, ANN202 - stands in for optimizer.step
        # Ranger centralises each gradient row (dim 0) on its own and is elementwise otherwise, so stepping blocks of
        # rows is the same step, holding the optimiser state (three copies) of one block at a time: in float64 the
        # state of the whole hypernet would be ~4.5 GB, w2's alone 3.2 GB.
        for name, p in model.hypernet.named_parameters():
            if p.grad is None:
                continue
            record = on_grad(name, p.grad.detach())       # before the step: Ranger centralises p.grad in place
            before = p.detach().clone()
            rows = max(1, STEP_BLOCK_BYTES // (p[0].numel() * p.element_size()))
            for top in range(0, p.shape[0], rows):
                block = torch.nn.Parameter(p.detach()[top:top + rows])     # shares p's memory
                block.grad = p.grad[top:top + rows]
                make_optimizer([block], setup["optimizer"], setup["lr"]).step()
            record.update(on_update(name, before, p.detach()))
            p.grad = None
            params[name] = record

    optimizer.step = step_in_row_blocks
    e = load_file(OFFICIAL / "expected_256.safetensors")
    x = torch.cat([e["input"], e["iter3.image"]]).to(device, dtype)
    with ieee_float32(device):          # float32 on a GPU: no TF32 in the backward pass either
        result = train_step(model, w_encoder, loss_fn, optimizer, x, x.clone(), setup["n_iters_per_batch"])
    buffers = {n: b.detach().cpu() for n, b in model.hypernet.named_buffers()}
    return StepRecord(result.metrics, params, buffers)


def test_both_references_are_the_same_step():
    keys = ("layers_to_tune", "n_iters_per_batch", "lambdas", "optimizer", "lr", "batch", "input")
    assert {k: REF64["setup"][k] for k in keys} == {k: REF32["setup"][k] for k in keys}
    assert REF64["official_commit"] == REF32["official_commit"]
    assert sorted(REF64["params"]) == sorted(REF32["params"])


# ------------------------------------------------------------------------------------------------- float64

def _projection(flat: torch.Tensor) -> float:
    total = 0.0
    for start in range(0, flat.numel(), PROJECTION_BLOCK):
        part = flat[start:start + PROJECTION_BLOCK]
        i = torch.arange(start, start + part.numel(), dtype=torch.float64)
        total += float(part @ (torch.frac(i * PROJECTION_STEP) - 0.5))
    return total


def _summary(t: torch.Tensor, idx: list[int]) -> dict:
    """The float64 fixture's summary of a tensor."""
    flat = t.detach().to("cpu", torch.float64).reshape(-1)
    chunks = torch.tensor_split(flat, min(SUMMARY_CHUNKS, flat.numel()))
    return {"numel": flat.numel(), "norm": float(flat.norm()), "absmax": float(flat.abs().max()),
            "sum": float(flat.sum()), "chunk_sums": [float(c.sum()) for c in chunks],
            "projection": _projection(flat), "values": [float(flat[i]) for i in idx]}


@pytest.fixture(scope="module")
def step64(recipe, loss_models) -> StepRecord:
    def on_grad(name: str, grad: torch.Tensor) -> dict:
        return {"grad": _summary(grad, REF64["params"][name]["idx"])}

    def on_update(name: str, before: torch.Tensor, after: torch.Tensor) -> dict:
        idx = REF64["params"][name]["idx"]
        flat = after.reshape(-1)
        return {"update": _summary(after - before, idx), "after": [float(flat[i]) for i in idx],
                "param_absmax": float(before.abs().max())}

    return _train_step(recipe, loss_models, torch.float64, on_grad, on_update)


def _assert_within(ours: dict, ref: dict, allowed: float, what: str) -> None:
    """Every measure of `ours` is what a tensor within `allowed` (in norm) of the official one can give."""
    n = ref["numel"]
    assert ours["numel"] == n, what
    for key in ("norm", "absmax"):
        assert abs(ours[key] - ref[key]) <= allowed, (what, key, ours[key], ref[key], allowed)
    assert abs(ours["sum"] - ref["sum"]) <= math.sqrt(n) * allowed, (what, "sum", ours["sum"], ref["sum"])
    assert abs(ours["projection"] - ref["projection"]) <= 0.5 * math.sqrt(n) * allowed, (what, "projection")
    sizes = [len(c) for c in torch.tensor_split(torch.empty(n, dtype=torch.bool), len(ref["chunk_sums"]))]
    for k, (m, s, s_ref) in enumerate(zip(sizes, ours["chunk_sums"], ref["chunk_sums"])):
        assert abs(s - s_ref) <= math.sqrt(m) * allowed, (what, "chunk sum", k, s, s_ref)
    for k, (v, v_ref) in enumerate(zip(ours["values"], ref["values"])):
        assert abs(v - v_ref) <= allowed, (what, "entry", k, v, v_ref, allowed)


def test_float64_losses_of_every_iteration_equal_the_official(step64):
    assert len(step64.losses) == len(REF64["losses"]) == REF64["setup"]["n_iters_per_batch"]
    for ours, official in zip(step64.losses, REF64["losses"]):
        assert ours.keys() == official.keys()
        for key in official:
            assert ours[key] == pytest.approx(official[key], rel=F64_TOL, abs=1e-12), key


def test_float64_every_gradient_equals_the_official(step64):
    assert sorted(step64.params) == sorted(REF64["params"])      # the same parameters get gradients
    for name, ref in REF64["params"].items():
        _assert_within(step64.params[name]["grad"], ref["grad"], F64_TOL * ref["grad"]["norm"], name)


def test_float64_ranger_step_equals_the_official(step64):
    lr = REF64["setup"]["lr"]
    for name, ref in REF64["params"].items():
        ours = step64.params[name]
        # The first step moves a parameter by lr x its centralised gradient (centralising is a projection, so the
        # updates differ by at most lr x the gradients' difference), plus the parameters' float64 rounding.
        rounding = 4 * F64_EPS * ours["param_absmax"]
        allowed = lr * F64_TOL * ref["grad"]["norm"] + math.sqrt(ref["update"]["numel"]) * rounding
        _assert_within(ours["update"], ref["update"], allowed, name)
        assert torch.allclose(torch.tensor(ours["after"], dtype=torch.float64),
                              torch.tensor(ref["after"], dtype=torch.float64),
                              rtol=0, atol=lr * F64_TOL * ref["grad"]["norm"] + rounding), name


def test_float64_batchnorm_statistics_after_the_step_equal_the_official(step64):
    assert sorted(step64.buffers) == sorted(REF64["buffers"])
    for name, ref in REF64["buffers"].items():
        if "value" in ref:          # num_batches_tracked: one per iteration in train mode
            assert int(step64.buffers[name]) == ref["value"], name
        else:
            _assert_within(_summary(step64.buffers[name], ref["idx"]), ref, F64_TOL * ref["norm"], name)


# ------------------------------------------------------------------------------------------------- float32

def _chunk_sums(t: torch.Tensor, k: int) -> torch.Tensor:
    """The float32 fixture's chunk sums: k equal chunks of the flat tensor, the remainder left out."""
    flat = t.detach().to("cpu", torch.float64).reshape(-1)
    k = min(k, flat.numel())
    return flat[:flat.numel() // k * k].reshape(k, -1).sum(1)


def _on_exact_path(name: str) -> bool:
    return any(part in f".{name}" for part in EXACT_PATH)


@pytest.fixture(scope="module")
def step32(recipe, loss_models) -> StepRecord:
    def on_grad(name: str, grad: torch.Tensor) -> dict:
        ref = REF32["params"][name]
        return {"norm": float(grad.double().norm()), "absmax": float(grad.abs().max()),
                "chunk_sums": _chunk_sums(grad, len(ref["grad_chunk_sums"])),
                "values": grad.reshape(-1)[torch.tensor(ref["idx"], device=grad.device)].double().cpu()}

    def on_update(name: str, before: torch.Tensor, after: torch.Tensor) -> dict:
        idx = torch.tensor(REF32["params"][name]["idx"], device=after.device)
        return {"after": after.reshape(-1)[idx].cpu()}

    return _train_step(recipe, loss_models, torch.float32, on_grad, on_update)


def test_float32_losses_of_every_iteration_equal_the_official(step32):
    assert len(step32.losses) == len(REF32["losses"]) == REF32["setup"]["n_iters_per_batch"]
    for ours, official in zip(step32.losses, REF32["losses"]):
        assert ours.keys() == official.keys()
        for key in official:
            assert ours[key] == pytest.approx(official[key], abs=LOSS_TOL), key


def test_float32_gradients_as_a_whole_equal_the_official(step32):
    assert sorted(step32.params) == sorted(REF32["params"])      # the same parameters get gradients
    names = sorted(REF32["params"])
    total = math.sqrt(sum(step32.params[n]["norm"] ** 2 for n in names))
    total_ref = math.sqrt(sum(REF32["params"][n]["grad_norm"] ** 2 for n in names))
    assert total == pytest.approx(total_ref, rel=TOTAL_NORM_TOL)
    ours = torch.cat([step32.params[n]["chunk_sums"] for n in names])
    official = torch.cat([torch.tensor(REF32["params"][n]["grad_chunk_sums"], dtype=torch.float64) for n in names])
    assert float(ours @ official / (ours.norm() * official.norm())) >= WHOLE_COSINE_MIN


def test_float32_gradients_of_the_layers_without_activation_equal_the_official(step32):
    exact = [name for name in REF32["params"] if _on_exact_path(name)]
    assert len(exact) == 12         # w1, b1, w2, b2, 2 x linear (weight, bias), 2 x output (weight, bias)
    for name in exact:
        ours, ref = step32.params[name], REF32["params"][name]
        assert ours["norm"] == pytest.approx(ref["grad_norm"], rel=EXACT_PATH_NORM_TOL), name
        assert torch.allclose(ours["values"], torch.tensor(ref["grad"], dtype=torch.float64), rtol=0,
                              atol=EXACT_PATH_TOL * ref["grad_absmax"]), name
        assert torch.allclose(ours["chunk_sums"], torch.tensor(ref["grad_chunk_sums"], dtype=torch.float64), rtol=0,
                              atol=EXACT_PATH_CHUNK_TOL * ref["grad_norm"]), name


def _ulp32(x: torch.Tensor) -> torch.Tensor:
    """The spacing of float32 numbers at |x|."""
    x = x.abs().float()
    return torch.nextafter(x, torch.full_like(x, math.inf)) - x


def test_float32_parameters_after_one_ranger_step_equal_the_official(step32):
    lr = REF32["setup"]["lr"]
    for name, ref in REF32["params"].items():
        official = torch.tensor(ref["after"])
        slack = 2 * EXACT_PATH_TOL if _on_exact_path(name) else UPDATE_SLACK
        allowed = 2 * _ulp32(official) + lr * slack * ref["grad_absmax"]
        assert ((step32.params[name]["after"] - official).abs() <= allowed).all(), name


def test_float32_batchnorm_statistics_after_the_step_equal_the_official(step32):
    for name, ref in REF32["buffers"].items():
        if "value" in ref:          # num_batches_tracked: one per iteration in train mode
            assert int(step32.buffers[name]) == ref["value"], name
        else:
            # forward-only statistics: float32 rounding moves entries of size ~1 by ~1e-6
            assert float(step32.buffers[name].double().sum()) == pytest.approx(ref["sum"], rel=1e-5, abs=1e-4), name
