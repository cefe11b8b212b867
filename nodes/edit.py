"""Latent edit nodes (InterFaceGAN directions): one factor, or a sweep over factors."""
from __future__ import annotations


class HyperStyleLatentEdit:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("Moves W codes along an edit direction (latent + factor x direction). Render the result with "
                   "HyperStyle Generate and the image's deltas so the refinement stays applied.")
    RETURN_TYPES = ("HYPERSTYLE_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Edited codes, same shape as the input.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes from HyperStyle Encode."}),
            "direction": ("HYPERSTYLE_DIRECTION", {"tooltip": "Direction from HyperStyle Load Direction."}),
            "factor": ("FLOAT", {"default": 2.0, "min": -10.0, "max": 10.0, "step": 0.1,
                                 "tooltip": "Edit strength; the official examples use -5..5 (age: + is older)."}),
        }}

    def execute(self, latent, direction, factor=2.0):
        from ..hyperstyle_core.editing import apply_direction
        return (apply_direction(latent, direction, factor),)


class HyperStyleLatentEditSweep:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("Edits every latent at `steps` evenly spaced factors from start to end; outputs the batch "
                   "(all factors of image 1, then image 2, ...) and the matching deltas for HyperStyle Generate.")
    RETURN_TYPES = ("HYPERSTYLE_LATENT", "HYPERSTYLE_DELTAS")
    RETURN_NAMES = ("latent", "deltas")
    OUTPUT_TOOLTIPS = ("Edited codes, len(latent) x steps.", "The input deltas repeated to match (None if absent).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes from HyperStyle Encode."}),
            "direction": ("HYPERSTYLE_DIRECTION", {"tooltip": "Direction from HyperStyle Load Direction."}),
            "start": ("FLOAT", {"default": -3.0, "min": -10.0, "max": 10.0, "step": 0.1, "tooltip": "First factor."}),
            "end": ("FLOAT", {"default": 3.0, "min": -10.0, "max": 10.0, "step": 0.1, "tooltip": "Last factor."}),
            "steps": ("INT", {"default": 5, "min": 1, "max": 64, "tooltip": "Number of factors (frames)."}),
        }, "optional": {
            "deltas": ("HYPERSTYLE_DELTAS", {"tooltip": "The images' deltas, repeated for every factor."}),
        }}

    def execute(self, latent, direction, start=-3.0, end=3.0, steps=5, deltas=None):
        import torch

        from ..hyperstyle_core.editing import sweep_direction
        factors = [start] if steps == 1 else [start + (end - start) * i / (steps - 1) for i in range(steps)]
        swept = sweep_direction(latent, direction, factors)
        if deltas is not None:
            if deltas.batch_size not in (1, latent.shape[0]):
                raise ValueError(f"{deltas.batch_size} sets of deltas for {latent.shape[0]} latents")
            if deltas.batch_size != 1:
                index = torch.arange(latent.shape[0]).repeat_interleave(steps)
                deltas = deltas.index(index)
        return (swept, deltas)
