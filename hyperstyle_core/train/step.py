"""One training step of the hypernetwork, as training/coach_hyperstyle.py:Coach.perform_forward_on_batch + train.

    x -> W-encoder (frozen, eval, no grad) + latent_avg -> codes -> generator -> face_pool -> y_hat_0 (W inversion)
    for i in 1..n_iters:   deltas_i = deltas_{i-1} (detached) + hypernet(cat[x, y_hat_{i-1} (detached)])
                           y_hat_i = face_pool(generator(codes, deltas_i));  loss_i(y_hat_i, y); loss_i.backward()
    optimizer.step()        (once per batch: the gradients of all iterations add up)

`face_pool` is the official AdaptiveAvgPool2d((256, 256)) applied to every generator output; cars then keep rows
32:224 (192x256). The loss gets x = y, as the coach passes it. Validation runs the same forward without gradients.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..inversion import w_encode
from ..nn.networks import HyperStyleModel, WEncoderModel
from .losses import HyperStyleLoss

POOL_SIZE = (256, 256)              # models/hyperstyle.py: face_pool
CARS_ROWS = (32, 224)               # cars: y_hat[:, :, 32:224, :] after pooling


@dataclass
class ForwardResult:
    """What one batch's iterations produced (all detached)."""
    metrics: list[dict[str, float]] = field(default_factory=list)    # the official loss_dict of every iteration
    images: list[torch.Tensor] = field(default_factory=list)         # pooled y_hat of every iteration [B, 3, h, w]
    w_inversion: torch.Tensor | None = None                          # pooled W-inversion image [B, 3, h, w]


def pool_output(images: torch.Tensor, cars: bool) -> torch.Tensor:
    """Generator output [B, 3, S, S] -> the official training view: 256x256 (cars: rows 32:224, 192x256)."""
    pooled = F.adaptive_avg_pool2d(images, POOL_SIZE)
    return pooled[:, :, CARS_ROWS[0]:CARS_ROWS[1], :] if cars else pooled


def w_inversion(model: HyperStyleModel, w_encoder: WEncoderModel, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes [B, n_latent, 512], pooled W-inversion image) without gradients, the W-encoder in eval mode as
    models/hyperstyle.py:__get_w_inversion switches it."""
    w_encoder.eval()
    with torch.no_grad():
        codes = w_encode(w_encoder, x, model.latent_avg)
        return codes, pool_output(model.decoder(codes, None, randomize_noise=False), model.input_spec.is_cars)


def run_iterations(model: HyperStyleModel, w_encoder: WEncoderModel, loss_fn: HyperStyleLoss, x: torch.Tensor,
                   y: torch.Tensor, n_iters: int, train: bool, amp: bool = False,
                   scaler: torch.amp.GradScaler | None = None) -> ForwardResult:
    """The refinement iterations on one batch; with `train`, loss.backward() after every iteration.

    Args:
        model: the HyperStyle model being trained (its hypernet's train/eval mode is the caller's choice).
        w_encoder: the frozen W-encoder of the same domain and resolution.
        loss_fn: the weighted official loss.
        x, y: input and target [B, 3, 256, 256] in [-1, 1] (cars [B, 3, 192, 256]); the coach uses x = y.
        n_iters: refinement iterations (official --n_iters_per_batch; the README command uses 5).
        train: accumulate gradients (the caller zeroes them before and steps the optimiser after).
        amp: float16 autocast on CUDA (scaler scales the losses).
    """
    cars = model.input_spec.is_cars
    codes, y_hat = w_inversion(model, w_encoder, x)
    result = ForwardResult(w_inversion=y_hat.detach())
    deltas: dict[str, torch.Tensor] | None = None
    for i in range(n_iters):
        if i > 0:
            # Each iteration learns only from its own prediction: earlier deltas and images are constants.
            deltas = {name: d.detach() for name, d in deltas.items()}
            y_hat = y_hat.detach()
        with torch.enable_grad() if train else torch.no_grad(), _autocast(x.device, amp):
            predicted = model.hypernet(torch.cat([x, y_hat], dim=1))
            deltas = predicted if deltas is None else {n: deltas[n] + predicted[n] for n in deltas}
            y_hat = pool_output(model.decoder(codes, deltas, randomize_noise=False), cars)
            out = loss_fn(y_hat.to(y.dtype), y, y)      # autocast float16 back to the target's precision
        if train:
            (scaler.scale(out.loss) if scaler is not None else out.loss).backward()
        result.metrics.append(out.metrics)
        result.images.append(y_hat.detach())
    return result


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, dtype=torch.float16) if amp else contextlib.nullcontext()


def train_step(model: HyperStyleModel, w_encoder: WEncoderModel, loss_fn: HyperStyleLoss,
               optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, n_iters: int,
               scaler: torch.amp.GradScaler | None = None) -> ForwardResult:
    """Coach.train's body for one batch: zero the gradients, run the iterations with backward, one optimiser step."""
    optimizer.zero_grad()
    result = run_iterations(model, w_encoder, loss_fn, x, y, n_iters, train=True, amp=scaler is not None,
                            scaler=scaler)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    return result
