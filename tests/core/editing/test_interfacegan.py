"""InterFaceGAN boundaries fitted in torch: recovery of a known normal, sign, selection by score, file format."""
from __future__ import annotations

import pytest
import torch

from hyperstyle_core.io.checkpoints import load, read_info
from hyperstyle_core.editing.directions import LatentDirection, apply_direction, load_direction
from hyperstyle_core.editing.interfacegan import boundary_from_scores, fit_direction, select_by_score
from hyperstyle_core.io.directions import save_direction


def separable_data(n=3000, dim=64, seed=0, gap=0.3):
    """Anisotropic, off-centre Gaussian latents split by a known hyperplane, with a margin of `gap` on each side."""
    g = torch.Generator().manual_seed(seed)
    normal = torch.randn(dim, generator=g, dtype=torch.float64)
    normal /= normal.norm()
    scale = torch.exp(0.7 * torch.randn(dim, generator=g, dtype=torch.float64))   # per-feature spreads 0.2..5
    offset = 3 * torch.randn(dim, generator=g, dtype=torch.float64)
    x = torch.randn(n, dim, generator=g, dtype=torch.float64) * scale + offset
    signed = (x - offset) @ normal - 0.2
    keep = signed.abs() > gap
    return x[keep].float(), signed[keep] > 0, normal


def cosine(direction: LatentDirection, normal: torch.Tensor) -> float:
    return float(direction.vector.reshape(-1).double() @ normal.reshape(-1) / normal.norm())


@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_recovers_known_normal_pointing_to_label_1(method):
    x, labels, normal = separable_data()
    direction = fit_direction(x, labels, method=method, name="attr")
    assert direction.vector.shape == (1, 64) and direction.name == "attr"
    assert direction.vector.dtype == torch.float32
    assert abs(float(direction.vector.norm()) - 1) < 1e-5
    assert cosine(direction, normal) > 0.99
    # Moving a label-0 latent along the direction crosses the boundary towards label 1.
    proj = x.double() @ direction.vector[0].double()
    assert proj[labels].mean() > proj[~labels].mean()
    # Flipping the labels flips the direction.
    assert cosine(fit_direction(x, ~labels, method=method), normal) < -0.99


@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_w_plus_latents_give_a_w_plus_direction(method):
    x, labels, normal = separable_data(n=2000, dim=48, seed=1)
    wplus = x.reshape(-1, 3, 16)
    direction = fit_direction(wplus, labels.long(), method=method)       # 0/1 integers work like bools
    assert direction.vector.shape == (1, 3, 16) and direction.n_latent == 3
    assert cosine(direction, normal) > 0.99
    edited = apply_direction(wplus[:2], direction, 2.0)
    assert torch.allclose((edited - wplus[:2]).norm(dim=(1, 2)), torch.full((2,), 2.0), atol=1e-5)


def test_standardisation_maps_the_normal_back_to_latent_coordinates():
    x, labels, normal = separable_data(seed=2)
    with_std = fit_direction(x, labels, standardize=True)
    without = fit_direction(x, labels, standardize=False)
    assert cosine(with_std, normal) > 0.99 and cosine(without, normal) > 0.99


def test_select_by_score_keeps_top_and_bottom_ratio():
    g = torch.Generator().manual_seed(3)
    latents = torch.randn(1000, 8, generator=g)
    scores = latents[:, 0] * 2 + 1
    scores[5] = float("nan")                                              # invalid scores are dropped
    chosen, labels = select_by_score(latents, scores, ratio=0.1)
    assert chosen.shape == (2 * 99, 8) and labels.tolist() == [True] * 99 + [False] * 99
    by_feature = latents[torch.isfinite(scores), 0].sort(descending=True).values     # score is monotone in it
    assert torch.equal(chosen[:99, 0].sort(descending=True).values, by_feature[:99])
    assert torch.equal(chosen[99:, 0].sort(descending=True).values, by_feature[-99:])
    assert chosen[labels, 0].min() > chosen[~labels, 0].max()
    direction = boundary_from_scores(latents, scores, ratio=0.1)
    assert direction.vector[0, 0] > 0.9                                    # score grows along feature 0
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 0.5\]"):
        select_by_score(latents, scores, ratio=0.7)
    with pytest.raises(ValueError, match="keeps none; increase the ratio"):
        select_by_score(latents[:10], scores[:10], ratio=0.02)
    with pytest.raises(ValueError, match="got 1000 latents but scores of shape \\[999\\]"):
        select_by_score(latents, scores[:999])


def test_errors_say_what_to_do():
    x, labels, _ = separable_data(n=200, dim=8)
    with pytest.raises(ValueError, match="only one class .* Label some latents 0 and some 1"):
        fit_direction(x, torch.ones(x.shape[0], dtype=torch.bool))
    with pytest.raises(ValueError, match=f"got {x.shape[0]} latents but {x.shape[0] - 1} labels"):
        fit_direction(x, labels[:-1])
    with pytest.raises(ValueError, match="labels must be 0/1 or bool.*boundary_from_scores"):
        fit_direction(x, labels.float() * 3)
    with pytest.raises(ValueError, match="unknown method 'svc'; use one of svm, logistic"):
        fit_direction(x, labels, method="svc")
    with pytest.raises(ValueError, match=r"W \[N, D\] or W\+ \[N, n_latent, D\]"):
        fit_direction(x[:, 0], labels)
    with pytest.raises(ValueError, match="NaN or inf"):
        fit_direction(torch.where(torch.arange(8) == 3, float("nan"), x), labels)


@pytest.mark.parametrize("shape", [(1, 32), (1, 4, 32)])
def test_saved_direction_loads_like_a_converted_official_one(tmp_path, shape):
    vector = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    direction = LatentDirection(vector / vector.norm(), "fitted")
    path = save_direction(direction, tmp_path / "fitted.safetensors")
    loaded = load_direction(path)
    assert torch.equal(loaded.vector, direction.vector) and loaded.name == "fitted"
    assert torch.equal(load(path, device="cpu", expect="direction").vector, direction.vector)
    info = read_info(path)
    meta = info["metadata"]
    assert info["kind"] == "direction" and info["config"] == {"shape": list(shape)}
    assert meta["format"] == "hyperstyle.checkpoint" and meta["version"] == "1" and meta["opts"] == "{}"
    assert meta["source_name"] == "fitted" and len(meta["source_sha256"]) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fitted.safetensors"]   # no *.partial left
    with pytest.raises(ValueError, match="name the file 'fitted.safetensors'"):
        save_direction(direction, tmp_path / "fitted.pt")


def test_fitted_direction_round_trips_through_the_file(tmp_path):
    x, labels, normal = separable_data(n=1000, dim=16, seed=5)
    direction = fit_direction(x, labels, method="logistic", name="smile_fit")
    loaded = load_direction(save_direction(direction, tmp_path / "smile_fit.safetensors"))
    assert torch.equal(loaded.vector, direction.vector) and cosine(loaded, normal) > 0.99
