"""Weight-delta nodes: transfer to another generator (domain adaptation), save and load deltas and latents."""
from __future__ import annotations

from ..hyperstyle_core import WeightDeltas, load_latent, save_latent
from . import _comfy
from ._files import safetensors_kind
from ._types import checks_pack_inputs
from .invert import render

# Widget labels -> core layer presets (hyperstyle_core.deltas.preset_layers).
PRESETS = {
    "toonify (official: 14,15,17,18,20,21,23,24)": "toonify",
    "all tuned layers": "all",
    "medium + fine (16px and up)": "medium_fine",
    "fine only (64px and up)": "fine",
}


@checks_pack_inputs
class HyperStyleTransferDeltas:
    CATEGORY = "HyperStyle/deltas"
    FUNCTION = "execute"
    DESCRIPTION = ("Domain adaptation: renders latents with another generator of the same architecture (Toonify, "
                   "StyleGAN-NADA, ...) while applying the FFHQ HyperStyle deltas on a layer subset, as the "
                   "official recipe (ReStyle-e4e latents + deltas on the Toonify layers).")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Images from the target generator.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "generator": ("HYPERSTYLE_GENERATOR", {"tooltip": "Target generator, e.g. toonify.safetensors."}),
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes (official: from HyperStyle Encode ReStyle)."}),
            "deltas": ("HYPERSTYLE_DELTAS", {"tooltip": "Deltas from HyperStyle Refine (FFHQ model)."}),
            "layers": (list(PRESETS), {"default": next(iter(PRESETS)),
                                       "tooltip": "Which layers keep their deltas; the rest use the target weights."}),
            "strength": ("FLOAT", {"default": 1.0, "min": -2.0, "max": 3.0, "step": 0.05,
                                   "tooltip": "Multiplies the kept deltas."}),
            "randomize_noise": ("BOOLEAN", {"default": False, "tooltip": "Official domain adaptation uses fresh "
                                                                         "noise (True); False is deterministic."}),
            "batch_size": ("INT", {"default": 4, "min": 1, "max": 64,
                                   "tooltip": "Images rendered together; lower it if memory runs out."}),
        }}

    def execute(self, generator, latent, deltas, layers, strength=1.0, randomize_noise=False, batch_size=4):
        return (render(generator, latent, deltas.select_preset(PRESETS.get(layers, layers)), strength, randomize_noise,
                       batch_size),)


def _output_files(file_format: str) -> list[str]:
    """safetensors files in the output folder whose metadata says `file_format` (headers only are read, once per file
    version)."""
    root = _comfy.output_directory()
    if not root.is_dir():
        return []
    return sorted(f.relative_to(root).as_posix() for f in root.rglob("*.safetensors")
                  if safetensors_kind(f) == file_format)


@checks_pack_inputs
class HyperStyleSaveDeltas:
    CATEGORY = "HyperStyle/deltas"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves weight deltas to ComfyUI's output folder as safetensors with metadata (signature, format)."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the written file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "deltas": ("HYPERSTYLE_DELTAS", {"tooltip": "Deltas from HyperStyle Refine."}),
            "filename_prefix": ("STRING", {"default": "HyperStyle/deltas",
                                           "tooltip": "Relative name in the output folder; a counter is added."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Save Deltas")

    def execute(self, deltas, filename_prefix="HyperStyle/deltas"):
        path, _ = _comfy.save_path(filename_prefix, ".safetensors", "HyperStyle Save Deltas")
        deltas.save(path)
        return {"ui": {"text": [str(path)]}, "result": (str(path),)}


class HyperStyleLoadDeltas:
    CATEGORY = "HyperStyle/deltas"
    FUNCTION = "execute"
    DESCRIPTION = "Loads weight deltas saved by HyperStyle Save Deltas (or the CLI) from the output folder."
    RETURN_TYPES = ("HYPERSTYLE_DELTAS",)
    RETURN_NAMES = ("deltas",)
    OUTPUT_TOOLTIPS = ("The saved deltas.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": (_output_files("weight_deltas"),
                                      {"tooltip": "A deltas file in the output folder."})}}

    def execute(self, file):
        return (WeightDeltas.load(_comfy.output_file(file, "HyperStyle Load Deltas")),)


@checks_pack_inputs
class HyperStyleSaveLatent:
    CATEGORY = "HyperStyle/deltas"
    FUNCTION = "execute"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves latent codes to ComfyUI's output folder as safetensors."
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("Path of the written file.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "latent": ("HYPERSTYLE_LATENT", {"tooltip": "Codes to save."}),
            "filename_prefix": ("STRING", {"default": "HyperStyle/latent",
                                           "tooltip": "Relative name in the output folder; a counter is added."}),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, filename_prefix=None):
        return _comfy.validate_filename_prefix(filename_prefix, "HyperStyle Save Latent")

    def execute(self, latent, filename_prefix="HyperStyle/latent"):
        path, _ = _comfy.save_path(filename_prefix, ".safetensors", "HyperStyle Save Latent")
        save_latent(path, latent)
        return {"ui": {"text": [str(path)]}, "result": (str(path),)}


class HyperStyleLoadLatent:
    CATEGORY = "HyperStyle/deltas"
    FUNCTION = "execute"
    DESCRIPTION = "Loads latent codes saved by HyperStyle Save Latent (or the CLI) from the output folder."
    RETURN_TYPES = ("HYPERSTYLE_LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The saved codes.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"file": (_output_files("latent"), {"tooltip": "A latent file in the output folder."})}}

    def execute(self, file):
        return (load_latent(_comfy.output_file(file, "HyperStyle Load Latent")),)
