"""A model's networks run under one plan: what `inversion.refine` and `generate` hold for a call."""
from __future__ import annotations

from typing import Mapping

import torch

from ..hypernetwork import HyperNetwork
from ..stylegan2 import Generator
from .generator import render
from .hypernet import predict_deltas
from .low_precision import Int8Products, bf16_copy, int8_products
from .plan import InferencePlan, plan_inference


class InferenceEngine:
    """A generator (and the hypernetwork that refines it) run as `plan` says.

    Where the plan asks for bf16 (fast mode), the networks run are the models' bf16 copies (cast once, cached while
    the models live): inputs are cast to bf16 and results come back in the models' dtype. Where it asks for int8
    products, the hypernetwork's big matrices are replaced by int8 copies (packed once per model, cached).
    """

    def __init__(self, generator: Generator, hypernet: HyperNetwork | None = None,
                 plan: InferencePlan | None = None):
        self.plan = plan if plan is not None else plan_inference(generator.device, generator.dtype)
        low = self.plan.low_precision is not None
        self.generator: Generator = bf16_copy(generator) if low else generator
        self.hypernet: HyperNetwork | None = None
        if hypernet is not None:
            self.hypernet = bf16_copy(hypernet) if low else hypernet
        self.products: Int8Products | None = None
        if hypernet is not None and self.plan.int8_products:
            self.products = int8_products(hypernet)

    def predict_deltas(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, input_nc, H, W] (image, reconstruction) -> {layer: offsets [B, out, in, k, k]} in the models' dtype."""
        if self.hypernet is None:
            raise ValueError("this engine runs a generator alone; give it the hypernetwork to predict deltas")
        low = self.plan.low_precision
        deltas = predict_deltas(self.hypernet, x if low is None else x.to(low), self.plan, self.products)
        return deltas if low is None else {name: d.to(self.plan.dtype) for name, d in deltas.items()}

    def render(self, latent: torch.Tensor | None = None, deltas: Mapping[str, torch.Tensor] | None = None,
               randomize_noise: bool = False, style_codes: Mapping[str, torch.Tensor] | None = None,
               render_size: int | None = None) -> torch.Tensor:
        """`nn.engine.render` of the engine's generator: [B, 3, H, W] in the models' dtype (see Generator.forward)."""
        low = self.plan.low_precision
        if low is not None:
            latent = None if latent is None else latent.to(low)
            deltas = None if deltas is None else {name: d.to(low) for name, d in deltas.items()}
            style_codes = None if style_codes is None else {name: s.to(low) for name, s in style_codes.items()}
        images = render(self.generator, self.plan, latent, deltas, randomize_noise, style_codes, render_size)
        return images if low is None else images.to(self.plan.dtype)
