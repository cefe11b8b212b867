"""Encode, refine and generate nodes: photo -> W codes -> HyperStyle weight deltas -> images."""
from __future__ import annotations

import torch

from ..hyperstyle_core import encode_in_batches, generate_in_batches, refine_in_batches, restyle_in_batches
from . import _comfy
from ._images import comfy_to_model_input, model_output_to_comfy
from ._types import checks_pack_inputs

BATCH_TOOLTIP = "Images processed together; lower it if memory runs out (results are identical)."
FAST_TOOLTIP = ("Fast mode: intermediate iterations rendered at 256 px, bf16 networks where bf16 is native, else int8 "
                "hypernetwork weights on CPU; faster, slightly different deltas (docs/speed.md). Off = the official "
                "computation.")


@checks_pack_inputs
class HyperStyleEncode:
    CATEGORY = "HyperStyle/invert"
    FUNCTION = "execute"
    DESCRIPTION = ("Encodes aligned face images into StyleGAN W codes with the W-encoder (W-encoder output + the "
                   "HyperStyle model's latent_avg, as the official code) and renders the initial reconstruction.")
    RETURN_TYPES = ("HYPERSTYLE_LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("W codes [B, n_styles, 512].", "Reconstruction from the codes alone (no refinement).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("HYPERSTYLE_MODEL", {"tooltip": "HyperStyle model (gives latent_avg and the generator)."}),
            "w_encoder": ("HYPERSTYLE_W_ENCODER", {"tooltip": "W-encoder of the same domain."}),
            "image": ("IMAGE", {"tooltip": "Aligned faces (HyperStyle Align Face); resized to 256x256."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": BATCH_TOOLTIP}),
        }}

    def execute(self, model, w_encoder, image, batch_size=4):
        spec = model.input_spec
        x = comfy_to_model_input(image, spec.height, spec.width, "HyperStyle Encode image")
        progress = _comfy.Progress(x.shape[0])
        encoded = encode_in_batches(x, model, w_encoder, batch_size, on_batch=progress.step)
        return (encoded.latent, model_output_to_comfy(encoded.images))


@checks_pack_inputs
class HyperStyleRefine:
    CATEGORY = "HyperStyle/invert"
    FUNCTION = "execute"
    DESCRIPTION = ("Runs HyperStyle's hypernetwork for a few iterations to predict per-layer generator weight "
                   "offsets (weight deltas) that make the generator reproduce each image faithfully.")
    RETURN_TYPES = ("HYPERSTYLE_DELTAS", "IMAGE")
    RETURN_NAMES = ("deltas", "reconstruction")
    OUTPUT_TOOLTIPS = ("Weight deltas, one set per image.",
                       "Final reconstruction (or every iteration, image-major, if output_all_iterations).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("HYPERSTYLE_MODEL", {"tooltip": "HyperStyle model."}),
            "image": ("IMAGE", {"tooltip": "The same aligned faces that were encoded."}),
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "W codes from HyperStyle Encode (one per image)."}),
            "iterations": ("INT", {"default": 5, "min": 1, "max": 20,
                                   "tooltip": "Refinement iterations (official default 5)."}),
            "output_all_iterations": ("BOOLEAN", {"default": False,
                                                  "tooltip": "Output every iteration's image (per image, in order)."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": BATCH_TOOLTIP}),
        }, "optional": {
            # Optional and last: workflows saved before it existed load with it off.
            "fast": ("BOOLEAN", {"default": False, "tooltip": FAST_TOOLTIP}),
        }}

    def execute(self, model, image, latent, iterations=5, output_all_iterations=False, batch_size=4, fast=False):
        spec = model.input_spec
        x = comfy_to_model_input(image, spec.height, spec.width, "HyperStyle Refine image")
        if latent.shape[0] != x.shape[0]:
            raise ValueError(f"HyperStyle Refine got {x.shape[0]} images but {latent.shape[0]} latents; connect the "
                             f"latent from HyperStyle Encode of the same images")
        progress = _comfy.Progress(x.shape[0] * iterations)
        refined = refine_in_batches(x, model, latent, iterations, batch_size, all_iterations=output_all_iterations,
                                    fast=bool(fast), on_step=progress.step)
        images = refined.images.flatten(0, 1) if output_all_iterations else refined.images     # image-major
        return (refined.deltas, model_output_to_comfy(images))


@checks_pack_inputs
class HyperStyleGenerate:
    CATEGORY = "HyperStyle/invert"
    FUNCTION = "execute"
    DESCRIPTION = ("Renders W/W+ codes with a StyleGAN2 generator, optionally with HyperStyle weight deltas "
                   "(scaled by delta_strength). Stored noise by default, as the official inference.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Rendered images at the generator's resolution.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("HYPERSTYLE_GENERATOR", {"tooltip": "Generator from a loader."}),
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes to render."}),
            "delta_strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 3.0, "step": 0.05,
                                         "tooltip": "Multiplies the deltas: 0 = plain generator, 1 = as refined."}),
            "randomize_noise": ("BOOLEAN", {"default": False,
                                            "tooltip": "Fresh noise instead of the generator's stored noise maps."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": BATCH_TOOLTIP}),
        }, "optional": {
            "deltas": ("HYPERSTYLE_DELTAS", {"tooltip": "Weight deltas: one set, or one per latent."}),
        }}

    def execute(self, generator, latent, delta_strength=1.0, randomize_noise=False, batch_size=4, deltas=None):
        return (render(generator, latent, deltas, delta_strength, randomize_noise, batch_size),)


def render(generator, latent, deltas, strength: float, randomize_noise: bool, batch_size: int) -> torch.Tensor:
    """`generate_in_batches` with a progress bar, as a ComfyUI IMAGE."""
    progress = _comfy.Progress(latent.shape[0])
    images = generate_in_batches(generator, latent, deltas, randomize_noise, strength, batch_size, progress.step)
    return model_output_to_comfy(images)


@checks_pack_inputs
class HyperStyleEncodeReStyle:
    CATEGORY = "HyperStyle/invert"
    FUNCTION = "execute"
    DESCRIPTION = ("Encodes aligned faces into W+ codes with ReStyle-e4e (iterative). The official domain "
                   "adaptation uses these latents with FFHQ HyperStyle deltas on a fine-tuned generator.")
    RETURN_TYPES = ("HYPERSTYLE_LATENT", "IMAGE")
    RETURN_NAMES = ("latent", "reconstruction")
    OUTPUT_TOOLTIPS = ("W+ codes [B, n_styles, 512].", "ReStyle-e4e reconstruction after the last step.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "restyle": ("HYPERSTYLE_RESTYLE", {"tooltip": "ReStyle-e4e encoder."}),
            "image": ("IMAGE", {"tooltip": "Aligned faces; resized to 256x256."}),
            "iterations": ("INT", {"default": 2, "min": 1, "max": 10,
                                   "tooltip": "ReStyle steps (official domain adaptation: 2)."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 64, "tooltip": BATCH_TOOLTIP}),
        }}

    def execute(self, restyle, image, iterations=2, batch_size=4):
        spec = restyle.input_spec
        x = comfy_to_model_input(image, spec.height, spec.width, "HyperStyle Encode ReStyle image")
        progress = _comfy.Progress(x.shape[0])
        encoded = restyle_in_batches(x, restyle, iterations, batch_size, on_batch=progress.step)
        return (encoded.latent, model_output_to_comfy(encoded.images))
