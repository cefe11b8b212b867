"""Latent edit nodes (InterFaceGAN directions): one factor, or a sweep over factors."""
from __future__ import annotations

import re

from ..hyperstyle_core import (apply_direction, compute_ganspace, fit_direction, ganspace_edit, load_ganspace,
                               save_direction, save_ganspace, sweep_direction, sweep_factors)
from . import _comfy
from ._comfy import resolve_model_path
from ._files import picker
from ._types import checks_pack_inputs


@checks_pack_inputs
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
        return (apply_direction(latent, direction, factor),)


@checks_pack_inputs
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
        swept = sweep_direction(latent, direction, sweep_factors(start, end, steps))
        return (swept, None if deltas is None else deltas.repeat_each(latent.shape[0], steps))


class HyperStyleLoadGanSpace:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("Loads GANSpace PCA directions: the official cars_pca.pt (read safely) or a directions file "
                   "written by HyperStyle Compute GANSpace / the CLI.")
    RETURN_TYPES = ("HYPERSTYLE_GANSPACE",)
    RETURN_NAMES = ("ganspace",)
    OUTPUT_TOOLTIPS = ("PCA directions (mean, std, components) for HyperStyle GANSpace Edit.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": picker("ganspace", "cars_pca.pt or a GANSpace .safetensors (from Compute "
                                                        "GANSpace) in the hyperstyle model folder; only GANSpace "
                                                        "files are listed.")}}

    def execute(self, file):
        return (load_ganspace(resolve_model_path(file)),)


@checks_pack_inputs
class HyperStyleComputeGanSpace:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("Computes GANSpace directions for any generator: PCA of W = mapping(z) over random z. Optionally "
                   "saves them into the output folder (reuse with HyperStyle Load GANSpace after moving the file "
                   "into models/hyperstyle).")
    RETURN_TYPES = ("HYPERSTYLE_GANSPACE",)
    RETURN_NAMES = ("ganspace",)
    OUTPUT_TOOLTIPS = ("PCA directions, components sorted by explained variance.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("HYPERSTYLE_GENERATOR", {"tooltip": "Generator whose mapping network is analysed."}),
            "n_samples": ("INT", {"default": 100000, "min": 1000, "max": 2000000, "step": 1000,
                                  "tooltip": "Random z samples (GANSpace uses 1e6; 1e5 is plenty for the top 80)."}),
            "n_components": ("INT", {"default": 80, "min": 1, "max": 512, "tooltip": "Components kept."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "Sampling seed.",
                             "control_after_generate": False}),
            "filename_prefix": ("STRING", {"default": "",
                                           "tooltip": "If set, also save as "
                                                      "<output>/<prefix>_<counter>_.safetensors."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        if filename_prefix is not None and not filename_prefix.strip():
            return True     # empty: nothing is saved
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Compute GANSpace")

    def execute(self, generator, n_samples=100000, n_components=80, seed=0, filename_prefix=""):
        if filename_prefix.strip():     # refuse a bad name before the long computation, not after it
            _comfy.check_filename_prefix(filename_prefix, "HyperStyle Compute GANSpace")
        progress = _comfy.Progress(n_samples)

        def on_progress(done, total=None):
            progress.step(max(0, done - progress.done))
        directions = compute_ganspace(generator, n_samples=n_samples,
                                      n_components=min(n_components, generator.config.style_dim), seed=seed,
                                      progress=on_progress)
        if filename_prefix.strip():
            path, _ = _comfy.save_path(filename_prefix, ".safetensors", "HyperStyle Compute GANSpace")
            save_ganspace(directions, path)
        return (directions,)


@checks_pack_inputs
class HyperStyleGanSpaceEdit:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("GANSpace edit as the official cars editor: sets the latent's coordinate along one PCA component "
                   "to `strength` standard deviations on style layers start..end-1 (e.g. cars presets 0/0/5/2 pose, "
                   "16/3/6/25 cube, 22/9/11/-8 colour, 41/9/11/-18 grass).")
    RETURN_TYPES = ("HYPERSTYLE_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("Edited W+ codes.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "W+ codes [B, n_styles, 512]."}),
            "ganspace": ("HYPERSTYLE_GANSPACE", {"tooltip": "Directions from Load / Compute GANSpace."}),
            "component": ("INT", {"default": 0, "min": 0, "max": 511, "tooltip": "PCA component index."}),
            "start_layer": ("INT", {"default": 0, "min": 0, "max": 17, "tooltip": "First style layer edited."}),
            "end_layer": ("INT", {"default": 5, "min": 1, "max": 18, "tooltip": "One past the last layer edited."}),
            "strength": ("FLOAT", {"default": 2.0, "min": -50.0, "max": 50.0, "step": 0.5,
                                   "tooltip": "Target coordinate in standard deviations along the component."}),
        }}

    def execute(self, latent, ganspace, component=0, start_layer=0, end_layer=5, strength=2.0):
        return (ganspace_edit(latent, ganspace, component, start_layer, end_layer, strength),)


@checks_pack_inputs
class HyperStyleFitDirection:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("Fits your own InterFaceGAN direction from labelled latents (e.g. encode a batch of photos and "
                   "tag each with 1 = has the attribute, 0 = not): the normal of a linear SVM / logistic boundary, "
                   "pointing towards label 1. Saves it into the output folder when a name is given.")
    RETURN_TYPES = ("HYPERSTYLE_DIRECTION",)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("Unit-norm direction for HyperStyle Latent Edit.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes of the labelled images (at least 2 per class)."}),
            "labels": ("STRING", {"default": "1,0", "multiline": False,
                                  "tooltip": "One 0/1 label per latent, comma or space separated, in batch order."}),
            "method": (["svm", "logistic"], {"default": "svm", "tooltip": "Linear SVM (InterFaceGAN) or logistic."}),
            "filename_prefix": ("STRING", {"default": "",
                                           "tooltip": "If set, save <output>/<prefix>_<counter>_.safetensors "
                                                      "(a direction file Load Direction reads)."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        if filename_prefix is not None and not filename_prefix.strip():
            return True     # empty: nothing is saved
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Fit Direction")

    def execute(self, latent, labels, method="svm", filename_prefix=""):
        if filename_prefix.strip():
            _comfy.check_filename_prefix(filename_prefix, "HyperStyle Fit Direction")
        values = [v for v in re.split(r"[,\s]+", labels.strip()) if v]
        try:
            parsed = [int(v) for v in values]
        except ValueError:
            raise ValueError(f"labels must be 0/1 numbers separated by commas, got {labels!r}") from None
        direction = fit_direction(latent, parsed, method=method, name=filename_prefix.strip() or "fitted")
        if filename_prefix.strip():
            path, _ = _comfy.save_path(filename_prefix, ".safetensors", "HyperStyle Fit Direction")
            save_direction(direction, path)
        return (direction,)
