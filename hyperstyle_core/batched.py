"""The inversion recipes over many images, `batch_size` at a time, results gathered on the CPU.

Each function gives what the unbatched call on the whole batch gives (every step of the recipes works per sample),
so `batch_size` only bounds the memory one call holds: at most one batch lives on the models' device.

    encoded = encode_in_batches(images, hyperstyle, w_encoder, batch_size=4)    # codes + initial renders
    refined = refine_in_batches(images, hyperstyle, encoded.latent, n_iters=5)   # deltas + final renders
    toons = generate_in_batches(toonify, encoded.latent, refined.deltas)         # any codes, with deltas
    restyled = restyle_in_batches(images, restyle, n_iters=2)                    # ReStyle-e4e W+ codes

A progress callback, when given, is called with the number of work units just finished (see each function), so a
progress bar of the total size can simply advance by it; raising in it stops the work.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .deltas import WeightDeltas
from .inversion import generate, refine, restyle_e4e_invert, w_encode
from .nn.networks import HyperStyleModel, ReStyleE4EModel, WEncoderModel
from .nn.stylegan2 import Generator

__all__ = ["Progress", "EncodedBatch", "RefinedBatch", "batch_ranges", "encode_in_batches", "refine_in_batches",
           "generate_in_batches", "restyle_in_batches"]

Progress = Callable[[int], None]        # called with the number of work units just finished


@dataclass(frozen=True)
class EncodedBatch:
    """Codes of a batch of images and their renders (`encode_in_batches`, `restyle_in_batches`).

    latent: [B, n_latent, 512] W+ codes on the CPU, in the models' dtype.
    images: [B, 3, H, W] float32 on the CPU, roughly in [-1, 1]: the codes rendered without deltas, at the
        generator's resolution (cars: the 384x512 crop).
    """
    latent: torch.Tensor
    images: torch.Tensor


@dataclass(frozen=True)
class RefinedBatch:
    """Weight deltas of a batch of images and their renders (`refine_in_batches`).

    deltas: WeightDeltas of batch B on the CPU, in the models' dtype.
    images: [B, 3, H, W] float32 on the CPU, roughly in [-1, 1]: the final reconstructions; with every iteration
        asked for, [B, n_iters, 3, H, W] (per image, its iterations in order; [:, -1] is the final one).
    """
    deltas: WeightDeltas
    images: torch.Tensor


def batch_ranges(n: int, batch_size: int) -> list[tuple[int, int]]:
    """[start, stop) ranges covering range(n) in steps of batch_size (results do not depend on it)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    return [(start, min(n, start + batch_size)) for start in range(0, n, batch_size)]


def _check_not_empty(n: int, what: str) -> None:
    if n == 0:
        raise ValueError(f"{what}: the batch is empty; pass at least one")


def _check_type(model: object, expected: type, role: str, title: str) -> None:
    if not isinstance(model, expected):
        raise ValueError(f"needs {title} as `{role}`, got {type(model).__name__}")


def encode_in_batches(images: torch.Tensor, hyperstyle: HyperStyleModel, w_encoder: WEncoderModel,
                      batch_size: int = 4, on_batch: Progress | None = None) -> EncodedBatch:
    """`w_encode` and the initial render (no deltas) of many images, `batch_size` at a time.

    Args:
        images: [B, 3, 256, 256] in [-1, 1] (cars: [B, 3, 192, 256]), aligned as the official inference transform
            makes them; on any device (each batch is moved to the models').
        hyperstyle: the HyperStyle model (its latent_avg and generator).
        w_encoder: the W-encoder of the same domain and resolution.
        batch_size: images per encoder / generator call.
        on_batch: called with the number of images of each finished batch.
    Returns:
        EncodedBatch: the codes (W-encoder output + latent_avg) and their renders.
    """
    _check_type(hyperstyle, HyperStyleModel, "hyperstyle", "a HyperStyle model")
    _check_type(w_encoder, WEncoderModel, "w_encoder", "a W-encoder model")
    _check_not_empty(images.shape[0], "encode_in_batches")
    generator = hyperstyle.generator
    latents, renders = [], []
    for a, b in batch_ranges(images.shape[0], batch_size):
        with torch.no_grad():
            codes = w_encode(w_encoder, images[a:b].to(generator.device, generator.dtype), hyperstyle.latent_avg)
        latents.append(codes.cpu())
        renders.append(generate(generator, codes).float().cpu())
        if on_batch is not None:
            on_batch(b - a)
    return EncodedBatch(torch.cat(latents), torch.cat(renders))


def refine_in_batches(images: torch.Tensor, hyperstyle: HyperStyleModel, latent: torch.Tensor, n_iters: int = 5,
                      batch_size: int = 4, all_iterations: bool = False, fast: bool = False,
                      on_step: Progress | None = None) -> RefinedBatch:
    """`refine` of many images, `batch_size` at a time: their weight deltas and reconstructions.

    Args:
        images: [B, 3, 256, 256] in [-1, 1] (cars: [B, 3, 192, 256]), the aligned targets, on any device.
        hyperstyle: the HyperStyle model.
        latent: [B, n_latent, 512] (or W [B, 512]) codes, one per image (e.g. `encode_in_batches(...).latent`).
        n_iters: refinement iterations per image (official 5).
        batch_size: images refined together.
        all_iterations: keep every iteration's reconstruction, not only the final one (see RefinedBatch.images).
        fast: `refine`'s fast mode (False: the official computation).
        on_step: called after every refinement iteration of every batch with the batch's image count (the calls
            add up to B * n_iters).
    Returns:
        RefinedBatch: the accumulated deltas and the reconstructions.
    """
    _check_type(hyperstyle, HyperStyleModel, "hyperstyle", "a HyperStyle model")
    _check_not_empty(images.shape[0], "refine_in_batches")
    if latent.shape[0] != images.shape[0]:
        raise ValueError(f"refine_in_batches got {images.shape[0]} images but {latent.shape[0]} latents; pass one "
                         f"latent per image")
    deltas, renders = [], []
    for a, b in batch_ranges(images.shape[0], batch_size):
        step = None if on_step is None else (lambda i, image, d, n=b - a: on_step(n))
        result = refine(images[a:b], hyperstyle, latent[a:b], n_iters, on_iteration=step, fast=fast)
        deltas.append(result.deltas.to("cpu"))
        if all_iterations:
            renders.append(torch.stack([image.float().cpu() for image in result.images], dim=1))
        else:
            renders.append(result.final.float().cpu())
        del result      # frees this batch's tensors on the device before the next batch runs
    return RefinedBatch(WeightDeltas.cat(deltas), torch.cat(renders))


def generate_in_batches(generator: Generator, latent: torch.Tensor, deltas: WeightDeltas | None = None,
                        randomize_noise: bool = False, strength: float = 1.0, batch_size: int = 4,
                        on_batch: Progress | None = None) -> torch.Tensor:
    """`generate` over a large batch, `batch_size` codes at a time, results gathered on the CPU.

    Args:
        generator: the generator to render with.
        latent: W [B, 512] or W+ [B, n_latent, 512] codes, on any device.
        deltas: one set (shared by every code) or one per code; None renders the plain generator.
        randomize_noise, strength: as `generate`.
        batch_size: codes per generator call.
        on_batch: called with the number of codes of each finished batch.
    Returns:
        [B, 3, H, W] float32 on the CPU, roughly in [-1, 1].
    """
    n = latent.shape[0]
    _check_not_empty(n, "generate_in_batches")
    if deltas is not None:
        deltas.check_compatible(generator)
        if deltas.batch_size not in (1, n):
            raise ValueError(f"{deltas.batch_size} sets of deltas for {n} latents; use one set, or one per latent")
    out = []
    for a, b in batch_ranges(n, batch_size):
        these = None if deltas is None else (deltas if deltas.batch_size == 1 else deltas.index(slice(a, b)))
        out.append(generate(generator, latent[a:b], these, randomize_noise, strength).float().cpu())
        if on_batch is not None:
            on_batch(b - a)
    return torch.cat(out)


def restyle_in_batches(images: torch.Tensor, restyle: ReStyleE4EModel, n_iters: int = 2, batch_size: int = 4,
                       on_batch: Progress | None = None) -> EncodedBatch:
    """`restyle_e4e_invert` of many images, `batch_size` at a time: the last step's codes and reconstructions.

    Args:
        images: [B, 3, 256, 256] in [-1, 1], aligned, on any device.
        restyle: the ReStyle-e4e model.
        n_iters: encoder steps (the official domain adaptation uses 2).
        batch_size: images encoded together.
        on_batch: called with the number of images of each finished batch.
    Returns:
        EncodedBatch: the W+ codes after the last step and their renders.
    """
    _check_type(restyle, ReStyleE4EModel, "restyle", "a ReStyle-e4e model")
    _check_not_empty(images.shape[0], "restyle_in_batches")
    latents, renders = [], []
    for a, b in batch_ranges(images.shape[0], batch_size):
        result = restyle_e4e_invert(images[a:b], restyle, n_iters)
        latents.append(result.latent.cpu())
        renders.append(result.images[-1].float().cpu())
        del result
        if on_batch is not None:
            on_batch(b - a)
    return EncodedBatch(torch.cat(latents), torch.cat(renders))
