"""The training losses against the official criteria/ code, and their behaviour.

Reference values (tests/fixtures/official_losses.json) were computed by the OFFICIAL code (yuval-alaluf/hyperstyle
@ a723c73) on CPU, outside this repository: criteria/lpips, criteria/id_loss.py, criteria/moco_loss.py and
training/coach_hyperstyle.py:Coach.calc_loss (called unbound on a stand-in `self` holding those modules), with the
recipe weights of the manifests ir_se50, alexnet, lpips_alex_lin, moco_v2 and no change to the math. Shims only:
`.cuda()` / `.to("cuda")` kept on the CPU, torchvision's `alexnet(True)` returning an AlexNet with the recipe weights,
`torch.hub.load_state_dict_from_url` returning the recipe linear layers (the official key renaming still ran),
`model_paths` pointing at recipe .pth files, and the coach's matplotlib / tensorboard / dataset imports stubbed.
Inputs: expected_256.safetensors, y = cat(input, iter3.image), y_hat = cat(iter1.image, y_hat_init), x = y flipped
over the batch; calc_loss gets x = y as the coach passes it; cars use rows 32:224. The official float32 results
differ from a float64 run of the same code by up to 8e-8; ours differ from the official by at most 1.2e-7.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import OFFICIAL
from hyperstyle_core.train.losses import HyperStyleLoss, LossWeights, find_loss_networks, l2_loss, load_losses

REFS = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "official_losses.json").read_text())
TOL = 2e-6          # observed max abs error 1.2e-7 (float32); a real difference is far larger
GRAD_TOL = 1e-4     # relative, on sums of the gradient [2, 3, 256, 256]


@pytest.fixture(scope="module")
def faces_loss(loss_models) -> HyperStyleLoss:
    return load_losses(LossWeights(), loss_models)


@pytest.fixture(scope="module")
def moco_loss(loss_models) -> HyperStyleLoss:
    return load_losses(LossWeights.for_domain(faces=False), loss_models)


@pytest.fixture(scope="module")
def images() -> dict[str, torch.Tensor]:
    e = load_file(str(OFFICIAL / "expected_256.safetensors"))
    y = torch.cat([e["input"], e["iter3.image"]])
    return {"y": y, "y_hat": torch.cat([e["iter1.image"], e["y_hat_init"]]), "x": torch.flip(y, dims=[0])}


def _assert_similarity(result, ref) -> None:
    assert float(result.loss) == pytest.approx(ref["loss"], abs=TOL)
    assert result.improvement == pytest.approx(ref["improve"], abs=TOL)
    for ours, theirs in zip(result.logs, ref["logs"], strict=True):
        assert ours == pytest.approx(theirs, abs=TOL)


# ------------------------------------------------------------------------------------------ against the official

def test_l2_matches_official(images):
    assert float(l2_loss(images["y_hat"], images["y"])) == pytest.approx(REFS["l2"], abs=TOL)


def test_lpips_matches_official(faces_loss, images):
    with torch.no_grad():
        assert float(faces_loss.lpips(images["y_hat"], images["y"])) == pytest.approx(REFS["lpips"], abs=TOL)


def test_id_loss_matches_official(faces_loss, images):
    with torch.no_grad():
        _assert_similarity(faces_loss.id_loss(images["y_hat"], images["y"], images["x"]), REFS["id"])


def test_moco_loss_matches_official(moco_loss, images):
    with torch.no_grad():
        _assert_similarity(moco_loss.moco(images["y_hat"], images["y"], images["x"]), REFS["moco"])


@pytest.mark.parametrize("domain", ["faces", "cars"])
def test_weighted_loss_and_gradient_match_official_calc_loss(domain, faces_loss, moco_loss, images):
    """Coach.calc_loss with the official weights: every loss_dict entry, and the gradient w.r.t. y_hat (which reaches
    the reconstruction only: the loss networks stay frozen)."""
    ref = REFS[f"calc_loss_{domain}"]
    lambdas = ref["lambdas"]
    weights = LossWeights(l2=lambdas["l2_lambda"], lpips=lambdas["lpips_lambda"], id=lambdas["id_lambda"],
                          moco=lambdas["moco_lambda"])
    assert weights == LossWeights.for_domain(faces=domain == "faces")     # the defaults are the official weights
    loss_fn = faces_loss if domain == "faces" else HyperStyleLoss(weights, moco_loss.lpips, moco=moco_loss.moco,
                                                                   cars=True)
    rows = slice(32, 224) if domain == "cars" else slice(None)
    y_hat = images["y_hat"][:, :, rows].clone().requires_grad_(True)
    y = images["y"][:, :, rows]
    out = loss_fn(y_hat, y, y)
    out.loss.backward()
    assert set(out.metrics) == set(ref["loss_dict"])
    for key, value in ref["loss_dict"].items():
        assert out.metrics[key] == pytest.approx(value, abs=TOL), key
    assert float(out.loss.detach()) == pytest.approx(ref["loss_dict"]["loss"], abs=TOL)
    assert float(y_hat.grad.sum()) == pytest.approx(ref["grad_sum"], rel=GRAD_TOL)
    assert float(y_hat.grad.abs().sum()) == pytest.approx(ref["grad_abs_sum"], rel=GRAD_TOL)
    assert float(y_hat.grad.abs().max()) == pytest.approx(ref["grad_abs_max"], rel=GRAD_TOL)
    assert not any(p.requires_grad or p.grad is not None for p in loss_fn.parameters())


# ------------------------------------------------------------------------------------------------- behaviour

@pytest.mark.parametrize("domain", ["faces", "moco"])
def test_identical_images_give_zero_loss(domain, faces_loss, moco_loss, images):
    loss_fn = faces_loss if domain == "faces" else moco_loss
    y = images["y"][:1]
    with torch.no_grad():
        out = loss_fn(y.clone(), y, y)
    assert {"loss_l2", "loss_lpips", "loss_id" if domain == "faces" else "loss_moco"} < set(out.metrics)
    for key in ("loss_l2", "loss_lpips", "loss_id", "loss_moco", "loss"):
        if key in out.metrics:
            assert abs(out.metrics[key]) < 1e-6, (key, out.metrics[key])
    assert out.similarity_logs[0]["diff_target"] == pytest.approx(1.0, abs=1e-6)


def test_loss_networks_stay_in_eval_mode(faces_loss):
    """train() on the loss (e.g. through a parent module) must not switch BatchNorm / dropout to training."""
    faces_loss.train()
    assert not any(m.training for m in faces_loss.modules())


def test_moco_loss_works_for_a_batch_of_one(moco_loss, images):
    """The official MocoLoss fails at batch 1 (its .squeeze() drops the batch dimension); ours gives row 0 of the
    batch-2 result, which matches the official."""
    with torch.no_grad():
        single = moco_loss.moco(images["y_hat"][:1], images["y"][:1], images["x"][:1])
    assert single.logs[0] == pytest.approx(REFS["moco"]["logs"][0], abs=TOL)


def test_only_the_networks_of_weighted_terms_are_needed(tmp_path):
    loss_fn = load_losses(LossWeights(l2=1.0, lpips=0.0, id=0.0), tmp_path)      # an empty folder is enough
    y = torch.zeros(1, 3, 256, 256)
    assert loss_fn(y + 0.5, y, y).metrics == {"loss_l2": 0.25, "loss": 0.25}


@pytest.mark.parametrize(("weights", "needed", "command"), [
    (LossWeights(), r"lpips loss \(--lpips_lambda 0\.8\) needs .*alexnet\.safetensors(.|\n)*"
                    r"lpips loss .*lpips_alex\.safetensors(.|\n)*id loss \(--id_lambda 0\.1\) needs .*"
                    r"model_ir_se50\.safetensors \(official file model_ir_se50\.pth\)",
     r"hyperstyle download alexnet lpips_alex model_ir_se50 --models .*--lpips_lambda 0 --id_lambda 0$"),
    (LossWeights(lpips=0.0), r"id loss .*model_ir_se50\.safetensors",
     r"hyperstyle download model_ir_se50 --models .*--id_lambda 0$"),
    (LossWeights(lpips=0.0, id=0.0, moco=0.5), r"moco loss .*moco_v2_800ep_pretrain\.safetensors",
     r"hyperstyle download moco_v2_800ep_pretrain --models .*--moco_lambda 0$"),
])
def test_absent_loss_networks_are_refused_with_the_command_that_gets_them(weights, needed, command, tmp_path):
    with pytest.raises(FileNotFoundError, match=rf"not in {tmp_path}:\n(.|\n)*{needed}(.|\n)*{command}"):
        load_losses(weights, tmp_path)


def test_missing_linear_layers_are_refused_even_with_alexnet_present(loss_models, tmp_path):
    (tmp_path / "alexnet.safetensors").symlink_to(loss_models / "alexnet-owt-7be5be79.safetensors")
    with pytest.raises(FileNotFoundError, match=r"LPIPS linear layers.*\n.*hyperstyle download lpips_alex --models"):
        load_losses(LossWeights(id=0.0), tmp_path)


def test_hand_converted_names_are_found(loss_models):
    """`hyperstyle convert alexnet-owt-7be5be79.pth` / `alex.pth` keep the official stems; they are found too."""
    found = find_loss_networks(LossWeights(), loss_models)
    assert {k: p.name for k, p in found.items()} == {
        "alexnet": "alexnet-owt-7be5be79.safetensors", "lpips_alex_lin": "alex.safetensors",
        "ir_se50": "model_ir_se50.safetensors"}


def test_a_file_of_another_kind_is_refused(loss_models):
    with pytest.raises(ValueError, match=r"is a similarity-loss network .* file, but a face-identity network"):
        load_losses(LossWeights(), loss_models, files={"ir_se50": loss_models / "moco_v2_800ep_pretrain.safetensors"})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"id": 0.1, "moco": 0.5}, "both the ID and the MoCo loss"),
    ({"l2": -1.0}, r"l2 loss weight \(--l2_lambda\) must be a finite number >= 0"),
    ({"lpips": float("nan")}, r"--lpips_lambda"),
    ({"l2": 0, "lpips": 0, "id": 0}, "every loss weight is 0"),
])
def test_bad_weights_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LossWeights(**kwargs)


def test_id_loss_needs_256_faces(faces_loss):
    small = torch.zeros(1, 3, 128, 128)
    with pytest.raises(ValueError, match=r"ID loss needs 256x256 aligned faces.*got 128x128"):
        faces_loss.id_loss(small, small, small)
    with pytest.raises(ValueError, match="for cars use the MoCo loss"):
        HyperStyleLoss(LossWeights(), faces_loss.lpips, faces_loss.id_loss, cars=True)


def test_mismatched_images_are_refused(faces_loss):
    with pytest.raises(ValueError, match=r"images of one shape.*y \[1, 3, 128, 128\]"):
        faces_loss(torch.zeros(1, 3, 256, 256), torch.zeros(1, 3, 128, 128), torch.zeros(1, 3, 256, 256))
    with pytest.raises(ValueError, match=r"float images \[B, 3, H, W\].*y_hat is shape \[1, 1, 256, 256\]"):
        faces_loss(torch.zeros(1, 1, 256, 256), torch.zeros(1, 1, 256, 256), torch.zeros(1, 1, 256, 256))


def test_a_network_is_required_for_every_weighted_term():
    with pytest.raises(ValueError, match="the id loss has weight 0.1 but no network was given"):
        HyperStyleLoss(LossWeights(lpips=0.0))
