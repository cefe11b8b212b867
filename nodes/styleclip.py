"""StyleCLIP global-direction nodes: edit by text in style space with the deltas kept, and compute the per-channel
CLIP directions (fs3) for any generator. CLIP weights come from the user's model folder; nothing is downloaded."""
from __future__ import annotations

from ..hyperstyle_core.editing.styleclip import (compute_channel_directions, load_channel_directions, load_s_stats,
                                                read_s_mean_std, save_generator_channel_directions, styleclip_edit)
from . import _comfy
from ._files import picker
from ._images import model_output_to_comfy
from ._types import checks_pack_inputs
from .loaders import load_clip_cached

TEMPLATE_TOOLTIP = ("Prompt templates, one per line, each with {} for the text. The official edit averages the 79 "
                    "templates of editing/styleclip/global_directions/templates.txt (paste them here).")


def _stats(name: str):
    path = _comfy.resolve_model_path(name)
    return load_s_stats(path) if path.suffix == ".safetensors" else read_s_mean_std(path)


@checks_pack_inputs
class HyperStyleStyleCLIPEdit:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    DESCRIPTION = ("StyleCLIP global direction: neutral -> target text gives a style-space (S) direction; channels "
                   "with relevance below beta are dropped; the image is re-rendered from S + alpha x direction with "
                   "its HyperStyle deltas, as the official StyleCLIP editing of HyperStyle.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Edited images at the generator's resolution.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("HYPERSTYLE_GENERATOR", {"tooltip": "Generator (the HyperStyle model's)."}),
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes from HyperStyle Encode."}),
            "clip_model": picker("clip", "CLIP weights (ViT-B-32.pt from OpenAI, or converted .safetensors)."),
            "s_statistics": picker("styleclip_s_stats",
                                   "S statistics: the official S_mean_std converted with `hyperstyle styleclip-stats`, "
                                   "or computed for your generator (per-layer S std)."),
            "channel_directions": picker("styleclip_channel_directions",
                                         "fs3 directions: the official fs3.npy, or a .safetensors from Compute "
                                         "StyleCLIP Directions."),
            "neutral_text": ("STRING", {"default": "face", "tooltip": "What the image is now."}),
            "target_text": ("STRING", {"default": "smiling face", "tooltip": "What it should become."}),
            "alpha": ("FLOAT", {"default": 3.0, "min": -10.0, "max": 10.0, "step": 0.1,
                                "tooltip": "Edit strength (official sweeps -5..5)."}),
            "beta": ("FLOAT", {"default": 0.12, "min": 0.0, "max": 0.99, "step": 0.01,
                               "tooltip": "Disentanglement threshold: higher keeps fewer channels."}),
            "templates": ("STRING", {"default": "a photo of a {}.", "multiline": True, "tooltip": TEMPLATE_TOOLTIP}),
        }, "optional": {
            "deltas": ("HYPERSTYLE_DELTAS", {"tooltip": "The images' deltas (one set, or one per latent)."}),
        }}

    def execute(self, generator, latent, clip_model, s_statistics, channel_directions, neutral_text, target_text,
                alpha=3.0, beta=0.12, templates="a photo of a {}.", deltas=None):
        template_list = [t.strip() for t in templates.splitlines() if t.strip()]
        model = load_clip_cached(clip_model)
        _, stds = _stats(s_statistics)
        delta_i_c, _ = load_channel_directions(_comfy.resolve_model_path(channel_directions))
        progress = _comfy.Progress(latent.shape[0])
        images = styleclip_edit(generator, latent, model, stds, delta_i_c, neutral_text, target_text,
                                   template_list, alpha, beta, deltas=deltas, progress=progress.step)
        return (model_output_to_comfy(images),)


@checks_pack_inputs
class HyperStyleComputeStyleCLIPDirections:
    CATEGORY = "HyperStyle/edit"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = ("Computes StyleCLIP's per-channel CLIP directions (the official fs3) for any generator, so text "
                   "edits work beyond FFHQ. Slow: every style channel is rendered n_samples times. Writes the file "
                   "into the output folder; move it to models/hyperstyle to use it.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The written .safetensors file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("HYPERSTYLE_GENERATOR", {"tooltip": "Generator to analyse."}),
            "clip_model": picker("clip", "CLIP weights (ViT-B-32.pt or .safetensors)."),
            "n_samples": ("INT", {"default": 100, "min": 2, "max": 10000,
                                  "tooltip": "Latents per channel (official: 100)."}),
            "filename_prefix": ("STRING", {"default": "HyperStyle/fs3", "tooltip": "Relative output name."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Compute StyleCLIP Directions")

    def execute(self, generator, clip_model, n_samples=100, filename_prefix="HyperStyle/fs3"):
        path, _ = _comfy.save_path(filename_prefix, ".safetensors", "HyperStyle Compute StyleCLIP Directions")
        model = load_clip_cached(clip_model)
        progress = _comfy.Progress(100)
        state = {"done": 0}

        def on_progress(done, total):
            pct = int(100 * done / max(total, 1))
            progress.step(max(0, pct - state["done"]))
            state["done"] = max(state["done"], pct)
        delta_i_c = compute_channel_directions(generator, model, n_samples, progress=on_progress)
        save_generator_channel_directions(path, delta_i_c, generator)
        return {"ui": {"text": [str(path)]}, "result": (str(path),)}
