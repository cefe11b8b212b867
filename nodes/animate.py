"""Animation nodes: interpolate between two inversions, save frame batches as GIF / WebP / PNG frames."""
from __future__ import annotations

from pathlib import Path

from PIL.PngImagePlugin import PngInfo

from ..hyperstyle_core import interpolate, save_animation
from . import _comfy
from ._images import save_png_with_metadata, to_rgb
from ._types import checks_pack_inputs

FORMATS = ["gif", "webp", "png frames"]
DEFAULT_PREFIX = "HyperStyle/animation"


@checks_pack_inputs
class HyperStyleInterpolate:
    CATEGORY = "HyperStyle/animate"
    FUNCTION = "execute"
    DESCRIPTION = ("Linear interpolation between two inverted images: latents and weight deltas together, so every "
                   "frame keeps the refinement. Render with HyperStyle Generate, save with Save Animation.")
    RETURN_TYPES = ("HYPERSTYLE_LATENT", "HYPERSTYLE_DELTAS")
    RETURN_NAMES = ("latent", "deltas")
    OUTPUT_TOOLTIPS = ("One latent per frame.", "One set of deltas per frame (None if no deltas were given).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent_a": ("HYPERSTYLE_LATENT", {"tooltip": "Start latent (batch 1, or the first of the batch)."}),
            "latent_b": ("HYPERSTYLE_LATENT", {"tooltip": "End latent."}),
            "frames": ("INT", {"default": 16, "min": 2, "max": 240, "tooltip": "Frames including both ends."}),
            "sample_a": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Which sample of latent_a's batch."}),
            "sample_b": ("INT", {"default": 0, "min": 0, "max": 4096, "tooltip": "Which sample of latent_b's batch."}),
        }, "optional": {
            "deltas_a": ("HYPERSTYLE_DELTAS", {"tooltip": "Deltas of the start image."}),
            "deltas_b": ("HYPERSTYLE_DELTAS", {"tooltip": "Deltas of the end image."}),
        }}

    def execute(self, latent_a, latent_b, frames=16, sample_a=0, sample_b=0, deltas_a=None, deltas_b=None):

        for name, latent, index in (("latent_a", latent_a, sample_a), ("latent_b", latent_b, sample_b)):
            if index >= latent.shape[0]:
                raise ValueError(f"{name} has {latent.shape[0]} sample(s); sample index {index} does not exist")
        return interpolate(latent_a[sample_a:sample_a + 1], latent_b[sample_b:sample_b + 1],
                           None if deltas_a is None else deltas_a.sample(sample_a),
                           None if deltas_b is None else deltas_b.sample(sample_b), frames)


class HyperStyleSaveAnimation:
    CATEGORY = "HyperStyle/animate"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = ("Saves an image batch (e.g. an edit sweep or an interpolation) as an animated GIF/WebP or PNG "
                   "frames in the output folder and shows it in the node, as ComfyUI's Save Animated WEBP does. PNG "
                   "frames carry the workflow, as ComfyUI's Save Image does.")
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("The written file (or folder for PNG frames).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "Frames in order."}),
            "filename_prefix": ("STRING", {"default": DEFAULT_PREFIX,
                                           "tooltip": "Relative name in the output folder; a counter is added."}),
            "format": (FORMATS, {"default": "webp", "tooltip": "Animated GIF, animated WebP, or numbered PNGs."}),
            "fps": ("FLOAT", {"default": 12.0, "min": 1.0, "max": 60.0, "step": 1.0, "tooltip": "Frames per second."}),
            "loop": ("BOOLEAN", {"default": True, "tooltip": "Loop forever (GIF/WebP)."}),
        }, "hidden": dict(_comfy.WORKFLOW_INPUTS)}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Save Animation")

    def execute(self, images, filename_prefix=DEFAULT_PREFIX, format="webp", fps=12.0, loop=True, prompt=None,
                extra_pnginfo=None):
        if format not in FORMATS:
            raise ValueError(f"HyperStyle Save Animation: format must be one of {FORMATS}, got {format!r}")
        frames = to_rgb(images, "HyperStyle Save Animation images").float().cpu()
        suffix = {"gif": ".gif", "webp": ".webp"}.get(format, "")     # "" = a folder of numbered PNGs
        target, subfolder = _comfy.save_path(filename_prefix, suffix, "HyperStyle Save Animation")
        if format == "png frames":
            metadata = _comfy.png_metadata(prompt, extra_pnginfo)
            ui = {"images": _save_png_frames(frames, target, _join(subfolder, target.name), metadata)}
        else:
            save_animation(frames, target, fps=fps, loop=loop)
            ui = {"images": [_output_image(target.name, subfolder)]}
            if frames.shape[0] > 1:     # the frontend then shows the file itself, playing, as for core's animations
                ui["animated"] = (True,)
        return {"ui": ui, "result": (str(target),)}


def _join(subfolder: str, name: str) -> str:
    return f"{subfolder}/{name}" if subfolder else name


def _output_image(filename: str, subfolder: str) -> dict:
    """A preview entry the frontend fetches through /view, as ComfyUI's save nodes return them."""
    return {"filename": filename, "subfolder": subfolder, "type": "output"}


def _save_png_frames(frames, folder: Path, subfolder: str, metadata: PngInfo | None) -> list[dict]:
    """Numbered PNGs <folder>/frame_00000.png, ... (named as the core's save_frames names them), each with the
    workflow metadata; returns their preview entries."""
    digits = max(5, len(str(frames.shape[0] - 1)))
    previews = []
    for i, frame in enumerate(frames):
        name = f"frame_{i:0{digits}d}.png"
        save_png_with_metadata(frame, folder / name, metadata)
        previews.append(_output_image(name, subfolder))
    return previews
