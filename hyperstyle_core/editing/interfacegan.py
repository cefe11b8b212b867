"""InterFaceGAN: fit a linear attribute boundary in W (or W+) and use its unit normal as an edit direction.

InterFaceGAN (Shen et al., utils/manipulator.py:train_boundary) sorts sampled latents by an attribute score, keeps the
top and bottom ratio as positives and negatives, fits a linear SVM and returns the hyperplane's unit normal. Here the
classifier is solved in torch (no scikit-learn): an L2-regularised linear SVM with squared hinge loss, or logistic
regression, both minimised with L-BFGS in float64 on standardised features. The normal is mapped back to latent
coordinates, so it points from label 0 towards label 1 in the latent space itself.

The direction plugs into `editing.apply_direction` (latent + factor * direction) and `save_direction` writes the
same safetensors layout the converter writes for the official age/smile/pose directions (io.directions).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch

from ..io.directions import LatentDirection

log = logging.getLogger(__name__)

METHODS = ("svm", "logistic")


def _as_features(latents: torch.Tensor, what: str = "latents") -> torch.Tensor:
    if not isinstance(latents, torch.Tensor) or latents.ndim not in (2, 3) or not latents.is_floating_point():
        shape = list(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"{what} must be a float tensor W [N, D] or W+ [N, n_latent, D], got {shape}")
    return latents.reshape(latents.shape[0], -1)


def _as_labels(labels: torch.Tensor | Sequence, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"labels must be a vector [N] of 0/1 or bool, got shape {list(labels.shape)}")
    if labels.shape[0] != n:
        raise ValueError(f"got {n} latents but {labels.shape[0]} labels; pass one label per latent")
    if labels.dtype != torch.bool:
        if not ((labels == 0) | (labels == 1)).all():
            raise ValueError("labels must be 0/1 or bool. For continuous attribute scores use boundary_from_scores "
                             "(or threshold them yourself)")
        labels = labels != 0
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == n:
        raise ValueError(f"labels contain only one class ({n_pos} of {n} are 1); a boundary needs examples of both. "
                         f"Label some latents 0 and some 1.")
    return labels


def _fit_linear(x: torch.Tensor, y: torch.Tensor, method: str, c: float, max_iter: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise 0.5 * |w|^2 + C * sum(loss(y * (x @ w + b))) (scaled by 1/(C N)); y in {-1, +1}. Returns (w, b)."""
    n, f = x.shape
    theta = torch.zeros(f + 1, dtype=x.dtype, device=x.device, requires_grad=True)
    reg = 0.5 / (c * n)
    optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                                  tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        margin = y * (x @ theta[:f] + theta[f])
        if method == "svm":
            loss = torch.clamp(1.0 - margin, min=0.0).square().mean()
        else:
            loss = torch.nn.functional.softplus(-margin).mean()
        obj = loss + reg * theta[:f].square().sum()
        obj.backward()
        return obj

    with torch.enable_grad():
        optimizer.step(closure)
    theta = theta.detach()
    return theta[:f], theta[f]


def fit_direction(latents: torch.Tensor, labels: torch.Tensor | Sequence, method: str = "svm", c: float = 1.0,
                  standardize: bool = True, max_iter: int = 500, name: str = "direction") -> LatentDirection:
    """Fit a linear boundary between labelled latents; return its unit normal, pointing towards label 1.

    Args:
        latents: W [N, D] or W+ [N, n_latent, D] (W+ is flattened: one boundary over all entries).
        labels: [N] bool or 0/1; both classes must occur.
        method: "svm" (L2-regularised linear SVM, squared hinge) or "logistic" (L2-regularised logistic regression).
        c: inverse regularisation strength, as sklearn's C (objective 0.5 |w|^2 + C * sum of losses).
        standardize: fit on per-feature standardised latents (zero mean, unit variance), then map the normal back to
            latent coordinates (w / sigma), so the direction is a normal in the latent space itself.
        max_iter: L-BFGS iterations.
        name: the direction's name.
    Returns:
        LatentDirection with a unit-norm vector [1, D] (W) or [1, n_latent, D] (W+), float32 on the CPU.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if not c > 0:
        raise ValueError(f"c must be > 0 (inverse regularisation strength), got {c}")
    feats = _as_features(latents)
    labels = _as_labels(labels, feats.shape[0]).to(feats.device)
    x = feats.detach().to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError("latents contain NaN or inf values; drop those samples before fitting")
    if standardize:
        mu = x.mean(0)
        sigma = x.std(0)
        sigma = torch.where(sigma > 1e-12, sigma, torch.ones_like(sigma))   # constant features carry no signal
        x = (x - mu) / sigma
    else:
        sigma = torch.ones(x.shape[1], dtype=x.dtype, device=x.device)
    y = labels.to(x.dtype) * 2.0 - 1.0
    w, b = _fit_linear(x, y, method, float(c), int(max_iter))
    accuracy = float(((x @ w + b > 0) == labels).double().mean())
    normal = w / sigma
    norm = normal.norm()
    if not torch.isfinite(norm) or norm < 1e-12:
        raise ValueError("the classifier found no direction separating the two label groups (the latents of both "
                         "classes look alike); check the labels or use more samples")
    log.info("fit_direction(%s, %s): %d samples, training accuracy %.4f", name, method, x.shape[0], accuracy)
    vector = (normal / norm).float().cpu().reshape(1, *latents.shape[1:])
    return LatentDirection(vector.contiguous(), name)


def select_by_score(latents: torch.Tensor, scores: torch.Tensor | Sequence, ratio: float = 0.02
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """InterFaceGAN's sample selection: the top `ratio` of samples by score become label 1, the bottom label 0.

    Args:
        latents: W [N, D] or W+ [N, n_latent, D].
        scores: [N] (or [N, 1]) attribute scores; non-finite scores are dropped.
        ratio: fraction of the valid samples kept on each side, in (0, 0.5].
    Returns:
        (latents [2M, ...] with the M positives first, labels [2M] bool), M = int(ratio * number of valid samples).
    """
    feats = _as_features(latents)
    scores = torch.as_tensor(scores, device=latents.device)
    if scores.ndim == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if scores.ndim != 1 or scores.shape[0] != feats.shape[0]:
        raise ValueError(f"got {feats.shape[0]} latents but scores of shape {list(scores.shape)}; pass one score per "
                         f"latent")
    if not 0 < ratio <= 0.5:
        raise ValueError(f"ratio must be in (0, 0.5] (the share of samples kept as positives and as negatives), "
                         f"got {ratio}")
    scores = scores.double()
    valid = torch.isfinite(scores).nonzero()[:, 0]
    m = int(valid.numel() * ratio)
    if m < 1:
        raise ValueError(f"ratio {ratio} of {valid.numel()} valid samples keeps none; increase the ratio or score "
                         f"more samples")
    order = valid[torch.argsort(scores[valid], descending=True, stable=True)]
    keep = torch.cat([order[:m], order[-m:]])
    labels = torch.zeros(2 * m, dtype=torch.bool, device=latents.device)
    labels[:m] = True
    return latents[keep], labels


def boundary_from_scores(latents: torch.Tensor, scores: torch.Tensor | Sequence, ratio: float = 0.02,
                         method: str = "svm", c: float = 1.0, name: str = "direction") -> LatentDirection:
    """`select_by_score` then `fit_direction`: the direction of increasing score, as InterFaceGAN's train_boundary.

    Args:
        latents: W [N, D] or W+ [N, n_latent, D].
        scores: [N] attribute scores (higher = more of the attribute).
        ratio: share of samples kept at each end (InterFaceGAN default 0.02).
        method, c, name: as in fit_direction.
    Returns:
        unit-norm LatentDirection pointing towards higher scores.
    """
    chosen, labels = select_by_score(latents, scores, ratio)
    return fit_direction(chosen, labels, method=method, c=c, name=name)
