"""Optimisers of the official training: Ranger (RAdam + Lookahead + gradient centralisation) and Adam.

Ranger is written here from its definition with the defaults of the official training/ranger.py (version 20.4.11):
lr 1e-3 (the coach passes 1e-4), betas (0.95, 0.999), eps 1e-5, no weight decay, Lookahead alpha 0.5 every k=6
steps, the RAdam variance-rectification threshold 5, gradient centralisation on every tensor with more than one
dimension. Its state lives in `state_dict()` (slow weights included), so a run resumes exactly.
"""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch.optim import Optimizer

OPTIMIZERS = ("ranger", "adam")
DEFAULT_LR = 1e-4                   # options/train_options.py --learning_rate


class Ranger(Optimizer):
    """RAdam with Lookahead and gradient centralisation (the official training optimiser)."""

    def __init__(self, params: Iterable[torch.nn.Parameter], lr: float = 1e-3, alpha: float = 0.5, k: int = 6,
                 n_sma_threshold: float = 5.0, betas: tuple[float, float] = (0.95, 0.999), eps: float = 1e-5,
                 weight_decay: float = 0.0, use_gc: bool = True, gc_conv_only: bool = False):
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Ranger's lookahead alpha must be in [0, 1], got {alpha}")
        if k < 1:
            raise ValueError(f"Ranger's lookahead k must be at least 1, got {k}")
        if not lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {lr}")
        if not eps > 0:
            raise ValueError(f"Ranger's eps must be > 0, got {eps}")
        defaults = dict(lr=lr, alpha=alpha, k=k, betas=betas, n_sma_threshold=n_sma_threshold, eps=eps,
                        weight_decay=weight_decay)
        super().__init__(params, defaults)
        self.use_gc = use_gc
        # centralise tensors with more dims than this: 1 = conv and linear weights, 3 = conv weights only
        self.gc_min_dims = 3 if gc_conv_only else 1

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - the torch.optim signature
        loss = None if closure is None else closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, group)
        return loss

    def _update(self, p: torch.nn.Parameter, group: dict) -> None:
        if p.grad.is_sparse:
            raise ValueError("Ranger does not support sparse gradients")
        # Half-precision parameters are updated in float32; float32 and float64 ones in their own precision.
        dtype = torch.promote_types(p.dtype, torch.float32)
        grad = p.grad.to(dtype)
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p, dtype=dtype)
            state["exp_avg_sq"] = torch.zeros_like(p, dtype=dtype)
            state["slow_buffer"] = p.detach().clone()
        if self.use_gc and grad.dim() > self.gc_min_dims:
            # gradient centralisation; in place like the reference, so p.grad ends up centralised too
            grad.sub_(grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True))
        state["step"] += 1
        step = state["step"]
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        n_sma, step_size = _radam_step_size(step, beta1, beta2, group["n_sma_threshold"])
        p32 = p.detach().to(dtype)      # the same tensor for float32 and float64 parameters
        if group["weight_decay"] != 0:
            p32.add_(p32, alpha=-group["weight_decay"] * group["lr"])
        if n_sma > group["n_sma_threshold"]:
            p32.addcdiv_(exp_avg, exp_avg_sq.sqrt().add_(group["eps"]), value=-step_size * group["lr"])
        else:
            p32.add_(exp_avg, alpha=-step_size * group["lr"])
        p.copy_(p32)
        if step % group["k"] == 0:      # Lookahead: pull the slow weights towards the fast ones, restart from there
            slow = state["slow_buffer"]
            slow.add_(p - slow, alpha=group["alpha"])
            p.copy_(slow)


def _radam_step_size(step: int, beta1: float, beta2: float, threshold: float) -> tuple[float, float]:
    """RAdam's length of the rectified SMA and the step size (before the learning rate), in float64."""
    beta2_t = beta2 ** step
    n_sma_max = 2 / (1 - beta2) - 1
    n_sma = n_sma_max - 2 * step * beta2_t / (1 - beta2_t)
    if n_sma > threshold:
        rect = (1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma * n_sma_max / (n_sma_max - 2)
        return n_sma, math.sqrt(rect) / (1 - beta1 ** step)
    return n_sma, 1.0 / (1 - beta1 ** step)


def make_optimizer(params: Iterable[torch.nn.Parameter], name: str = "ranger", lr: float = DEFAULT_LR) -> Optimizer:
    """The official choice (Coach.configure_optimizers): Ranger (default) or torch Adam with default betas."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; use one of {', '.join(OPTIMIZERS)}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"the learning rate must be a finite number > 0, got {lr!r} (official default {DEFAULT_LR})")
    params = list(params)
    return torch.optim.Adam(params, lr=lr) if name == "adam" else Ranger(params, lr=lr)
