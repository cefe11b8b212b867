"""Inversion: W-encoder + latent_avg, initial reconstruction, T hypernetwork refinement iterations.

Follows utils/inference_utils.py:run_inversion with randomize_noise=False and resize_outputs=False.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from .deltas import GeneratorSignature, WeightDeltas
from .nn.engine import InferenceEngine, plan_inference
from .nn.networks import HyperStyleModel, InputSpec, ReStyleE4EModel, WEncoderModel
from .nn.stylegan2 import Generator

IterationCallback = Callable[[int, torch.Tensor, WeightDeltas], None]


@dataclass
class InversionResult:
    """Outcome of `invert`.

    latent:  [B, n_latent, 512] W codes (W-encoder output + latent_avg); they never change across iterations.
    deltas:  accumulated WeightDeltas after the last iteration, batch B.
    initial: [B, 3, H, W] in [-1, 1] (roughly) reconstruction from the codes alone, full resolution.
    images:  one [B, 3, H, W] full-resolution reconstruction per iteration (images[-1] is the final one).
    For cars models H x W is the official 384x512 crop of the 512x512 output. In fast mode `initial` and every
    image but the last are 256-px renders scaled up bilinearly (previews); images[-1] is a full render.
    """
    latent: torch.Tensor
    deltas: WeightDeltas
    initial: torch.Tensor
    images: list[torch.Tensor] = field(default_factory=list)

    @property
    def final(self) -> torch.Tensor:
        return self.images[-1] if self.images else self.initial


def _crop(generator: Generator, images: torch.Tensor) -> torch.Tensor:
    crop = generator.config.output_crop
    return images[:, :, crop[0]:crop[1], :] if crop else images


def generate(generator: Generator, latent: torch.Tensor, deltas: WeightDeltas | None = None,
             randomize_noise: bool = False, strength: float = 1.0) -> torch.Tensor:
    """Render W [B, 512] / W+ [B, n_latent, 512] codes, optionally with weight deltas.

    Args:
        generator: a Generator (or a model's `.generator`).
        latent: W or W+ codes on the generator's device.
        deltas: WeightDeltas made for this generator's architecture; batch B, or 1 (shared by every code).
        randomize_noise: fresh noise instead of the stored noise buffers (official inference uses stored).
        strength: multiplies the deltas (0 = the plain generator).
    Returns:
        [B, 3, H, W], roughly in [-1, 1] (cars generators: the 384x512 crop).
    """
    wplus = generator.broadcast_latent(latent.to(device=generator.device, dtype=generator.dtype))
    delta_map = None
    if deltas is not None:
        if not isinstance(deltas, WeightDeltas):
            raise ValueError(f"deltas must be a WeightDeltas, got {type(deltas).__name__}")
        deltas.check_compatible(generator)
        if len(deltas) and deltas.batch_size not in (1, wplus.shape[0]):
            raise ValueError(f"deltas have batch {deltas.batch_size} but there are {wplus.shape[0]} latents; "
                             f"pick one sample's deltas with deltas.index(i) or pass matching batches")
        if strength != 1.0:
            deltas = deltas.scale(strength)
        delta_map = {n: t.to(device=generator.device, dtype=generator.dtype) for n, t in deltas.items()}
    images = InferenceEngine(generator).render(wplus, delta_map, randomize_noise=randomize_noise)
    return _crop(generator, images)


def w_encode(w_encoder: WEncoderModel, images: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
    """W codes: encoder offset + latent_avg. images [B, 3, h, w] in [-1, 1] -> [B, n_latent, 512]."""
    w_encoder.input_spec.check(images, "W-encoder")
    offsets = w_encoder.encoder(images)
    if offsets.shape[1:] != latent_avg.shape:
        raise ValueError(f"W-encoder gives {offsets.shape[1]} styles but the HyperStyle model's latent_avg has "
                         f"{latent_avg.shape[0]}: use the W-encoder of the same domain and resolution "
                         f"(e.g. faces_w_encoder with hyperstyle_ffhq)")
    return offsets + latent_avg.unsqueeze(0)


def invert(images: torch.Tensor, hyperstyle: HyperStyleModel, w_encoder: WEncoderModel, n_iters: int = 5,
           on_iteration: IterationCallback | None = None, fast: bool = False) -> InversionResult:
    """HyperStyle inversion of aligned images: `w_encode` then `refine`.

    Args:
        images: [B, 3, 256, 256] in [-1, 1] (cars: [B, 3, 192, 256]), as the official inference transform makes them.
        hyperstyle: a loaded HyperStyleModel.
        w_encoder: a loaded WEncoderModel of the same domain and resolution.
        n_iters: refinement iterations (official default 5).
        on_iteration: called as on_iteration(i, image [B,3,H,W], accumulated deltas) after each iteration i (1-based),
            e.g. for progress bars, interruption (raise to stop) or recording intermediate deltas.
        fast: trade a little fidelity for speed (see `refine`); False (default) follows the official code.
    Returns:
        InversionResult (see its docstring).
    """
    _check_models(hyperstyle, w_encoder)
    hyperstyle.input_spec.check(images, "HyperStyle")
    generator = hyperstyle.generator
    with torch.no_grad():
        codes = w_encode(w_encoder, images.to(device=generator.device, dtype=generator.dtype), hyperstyle.latent_avg)
    return refine(images, hyperstyle, codes, n_iters, on_iteration, fast)


def _check_models(hyperstyle, w_encoder) -> None:
    if not isinstance(hyperstyle, HyperStyleModel):
        raise ValueError(f"needs a HyperStyle model as `hyperstyle`, got {type(hyperstyle).__name__}")
    if not isinstance(w_encoder, WEncoderModel):
        raise ValueError(f"needs a W-encoder model as `w_encoder`, got {type(w_encoder).__name__}")


def refine(images: torch.Tensor, hyperstyle: HyperStyleModel, latent: torch.Tensor, n_iters: int = 5,
           on_iteration: IterationCallback | None = None, fast: bool = False) -> InversionResult:
    """HyperStyle refinement iterations starting from given codes (the W-encoder's, or any W/W+ codes).

    Args:
        images: [B, 3, 256, 256] in [-1, 1] (cars: [B, 3, 192, 256]), the aligned targets.
        hyperstyle: a loaded HyperStyleModel.
        latent: [B, n_latent, 512] (or W [B, 512]) codes; they are not changed by refinement.
        n_iters: iterations; each predicts offsets from (image, current reconstruction) and accumulates them.
        on_iteration: see `invert`.
        fast: render every iteration but the last at 256 px (the hypernetwork sees that render instead of the
            pooled full one), with bf16 copies of both networks where bf16 is native, else (CPU) int8 copies of
            the hypernetwork's big matrices (nn/engine/low_precision.py); docs/speed.md gives its measured cost.
            False (default): the official computation.
    Returns:
        InversionResult; `initial` is the render of `latent` without deltas.
    """
    _check_n_iters(n_iters)
    if not isinstance(fast, bool):
        raise ValueError(f"fast must be True or False, got {fast!r}")
    if not isinstance(hyperstyle, HyperStyleModel):
        raise ValueError(f"needs a HyperStyle model as `hyperstyle`, got {type(hyperstyle).__name__}")
    spec = hyperstyle.input_spec
    spec.check(images, "HyperStyle")
    generator = hyperstyle.generator
    x = images.to(device=generator.device, dtype=generator.dtype)
    codes = generator.broadcast_latent(latent.to(device=generator.device, dtype=generator.dtype))
    if codes.shape[0] != x.shape[0]:
        raise ValueError(f"{codes.shape[0]} latents for {x.shape[0]} images; pass one latent per image")
    signature = GeneratorSignature.of(generator)
    # One plan for the whole call: layouts, product forms and, in fast mode, the low-precision copies.
    plan = plan_inference(generator.device, generator.dtype, fast, generator.size)
    engine = InferenceEngine(generator, hyperstyle.hypernet, plan)
    preview = plan.preview_size
    with torch.no_grad():
        initial, y_hat = _render_initial(engine, spec, codes, preview)
        deltas: dict[str, torch.Tensor] | None = None
        outputs = []
        for it in range(1, n_iters + 1):
            predicted = engine.predict_deltas(torch.cat([x, y_hat], dim=1))
            deltas = predicted if deltas is None else _accumulate(deltas, predicted)
            image, y_hat = _render(engine, spec, codes, deltas, None if it == n_iters else preview)
            outputs.append(image)
            if on_iteration is not None:
                on_iteration(it, image, WeightDeltas(deltas, signature))
    return InversionResult(latent=codes, deltas=WeightDeltas(deltas, signature), initial=initial, images=outputs)


def _render_initial(engine: InferenceEngine, spec: InputSpec, codes: torch.Tensor,
                    preview: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(initial image, first y_hat): exact follows the official initial pass (pool to 256x256, then the cars crop)."""
    if preview is not None:
        return _render(engine, spec, codes, None, preview)
    full = engine.render(codes)
    y_hat = F.adaptive_avg_pool2d(full, (256, 256))
    return _crop(engine.generator, full), (y_hat[:, :, 32:224, :] if spec.is_cars else y_hat)


def _render(engine: InferenceEngine, spec: InputSpec, codes: torch.Tensor, deltas: dict[str, torch.Tensor] | None,
            preview: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(image at full resolution, cropped; the hypernetwork's next input y_hat).

    Exact (preview None): render in full, y_hat = the official pool of it. Preview: render at `preview` px; that
    render (cropped like the official initial pass, rows 32:224 for cars) is y_hat, and the image is it scaled up.
    """
    generator = engine.generator
    if preview is None:
        image = _crop(generator, engine.render(codes, deltas))
        return image, spec.pool(image)
    small = engine.render(codes, deltas, render_size=preview)
    full = F.interpolate(small, size=(generator.size, generator.size), mode="bilinear", align_corners=False)
    y_hat = F.adaptive_avg_pool2d(small, (256, 256))
    return _crop(generator, full), (y_hat[:, :, 32:224, :] if spec.is_cars else y_hat)


def _accumulate(deltas: dict[str, torch.Tensor], predicted: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """deltas + predicted, written into `predicted` (fresh this iteration; the old sums handed to callbacks are
    never touched), so accumulated, predicted and summed deltas no longer coexist. Same values (a + b == b + a).
    Expanded predictions (one offset per channel pair repeated over 3x3, stride 0) are small: added out of place."""
    return {n: predicted[n].add_(deltas[n]) if predicted[n].is_contiguous() else predicted[n] + deltas[n]
            for n in deltas}


@dataclass
class ReStyleResult:
    """Outcome of `restyle_e4e_invert`.

    latent:        [B, n_latent, 512] W+ codes after the last step.
    latents:       the W+ codes after each step.
    images:        full-resolution reconstruction after each step, [B, 3, H, W].
    average_image: [1, 3, 256, 256] render of latent_avg pooled to 256 (the step-1 companion input).
    """
    latent: torch.Tensor
    latents: list[torch.Tensor]
    images: list[torch.Tensor]
    average_image: torch.Tensor


def restyle_e4e_invert(images: torch.Tensor, restyle: ReStyleE4EModel, n_iters: int = 2) -> ReStyleResult:
    """ReStyle-e4e iterative encoding (utils/restyle_inference_utils.py:run_on_batch, randomize_noise=False).

    Args:
        images: [B, 3, 256, 256] in [-1, 1].
        restyle: a loaded ReStyleE4EModel.
        n_iters: encoder steps (domain adaptation uses 2).
    """
    _check_n_iters(n_iters)
    if not isinstance(restyle, ReStyleE4EModel):
        raise ValueError(f"restyle_e4e_invert needs a ReStyle-e4e model, got {type(restyle).__name__}")
    spec = restyle.input_spec
    spec.check(images, "ReStyle-e4e")
    generator = restyle.generator
    engine = InferenceEngine(generator)
    x = images.to(device=generator.device, dtype=generator.dtype)
    latents, outputs = [], []
    with torch.no_grad():
        avg = F.adaptive_avg_pool2d(engine.render(restyle.latent_avg.unsqueeze(0)), (256, 256))
        if spec.is_cars:
            avg = avg[:, :, 32:224, :]
        y_hat = avg.expand(x.shape[0], -1, -1, -1)
        latent = None
        for _ in range(n_iters):
            offsets = restyle.encoder(torch.cat([x, y_hat], dim=1))
            latent = offsets + (restyle.latent_avg.unsqueeze(0) if latent is None else latent)
            image = _crop(generator, engine.render(latent))
            latents.append(latent)
            outputs.append(image)
            y_hat = spec.pool(image)
    return ReStyleResult(latent=latent, latents=latents, images=outputs, average_image=avg)


def _check_n_iters(n_iters: object) -> None:
    # bool is an int subclass: n_iters=True would silently mean one iteration
    if not isinstance(n_iters, int) or isinstance(n_iters, bool) or n_iters < 1:
        raise ValueError(f"n_iters must be a positive integer, got {n_iters!r}")
