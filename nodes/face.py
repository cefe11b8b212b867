"""Face nodes: FFHQ alignment (dlib) of a batch, and paste-back of (edited) aligned faces into the photos."""
from __future__ import annotations

import numpy as np
import torch

from ..hyperstyle_core import align_batch, paste_back_batch
from . import _comfy
from ._images import to_rgb
from ._types import checks_pack_inputs

FACE_CHOICES = ["largest", "all", "index"]
NO_FACE_CHOICES = ["error", "skip", "passthrough"]


class HyperStyleAlignFace:
    CATEGORY = "HyperStyle/face"
    FUNCTION = "execute"
    DESCRIPTION = ("FFHQ face alignment as the official HyperStyle align script (dlib 68 landmarks): crops and "
                   "rotates each face the way the encoders expect. Works on a batch; outputs the alignment info "
                   "for HyperStyle Paste Back.")
    RETURN_TYPES = ("IMAGE", "HYPERSTYLE_ALIGNMENT")
    RETURN_NAMES = ("aligned", "alignment")
    OUTPUT_TOOLTIPS = ("Aligned square crops, one per chosen face.", "Where each crop came from (for Paste Back).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "image": ("IMAGE", {"tooltip": "Photos with faces (grayscale and RGBA are converted to RGB)."}),
            "output_size": ("INT", {"default": 256, "min": 64, "max": 2048, "step": 64,
                                    "tooltip": "Side of the aligned crop: 256 for the encoders, 1024 for full quality "
                                               "paste-back."}),
            "face": (FACE_CHOICES, {"default": "largest",
                                    "tooltip": "largest: one face per photo; all: every face (one output each); "
                                               "index: the face_index-th largest."}),
            "face_index": ("INT", {"default": 0, "min": 0, "max": 64,
                                   "tooltip": "With face = index: 0 = largest, 1 = second largest, ..."}),
            "on_no_face": (NO_FACE_CHOICES, {"default": "error",
                                             "tooltip": "error: stop with a message; skip: drop that photo; "
                                                        "passthrough: use a centre crop."}),
        }}

    def execute(self, image, output_size=256, face="largest", face_index=0, on_no_face="error"):

        images = to_rgb(image, "HyperStyle Align Face image")
        choice = face_index if face == "index" else face
        progress = _comfy.Progress(images.shape[0])
        crops, alignment = align_batch(images.float().cpu().numpy(), output_size, choice, on_no_face, progress.step)
        return (torch.from_numpy(np.stack(crops).astype(np.float32) / 255.0), alignment)


@checks_pack_inputs
class HyperStylePasteBack:
    CATEGORY = "HyperStyle/face"
    FUNCTION = "execute"
    DESCRIPTION = ("Warps (edited) aligned faces back into the original photos with a feathered mask, using the "
                   "alignment info. Faces can be any square size (e.g. 1024 generator output). If there are k "
                   "times more faces than aligned crops (an edit sweep), k composites per photo are made.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Photos with the faces pasted back, original size.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "original": ("IMAGE", {"tooltip": "The photos given to HyperStyle Align Face."}),
            "face": ("IMAGE", {"tooltip": "Faces to paste: one per aligned crop (or a multiple, e.g. a sweep)."}),
            "alignment": ("HYPERSTYLE_ALIGNMENT", {"tooltip": "From HyperStyle Align Face."}),
            "feather": ("FLOAT", {"default": 0.1, "min": 0.0, "max": 0.5, "step": 0.01,
                                  "tooltip": "Width of the soft mask edge, as a fraction of the face size."}),
        }}

    def execute(self, original, face, alignment, feather=0.1):

        photos = to_rgb(original, "HyperStyle Paste Back original")
        faces = to_rgb(face, "HyperStyle Paste Back face")
        progress = _comfy.Progress(photos.shape[0] * max(1, faces.shape[0] // max(1, len(alignment))))
        try:
            composites = paste_back_batch(photos.float().cpu().numpy(), faces.float().cpu().numpy(), alignment,
                                          feather, progress.step)
        except ValueError as e:
            raise ValueError(f"HyperStyle Paste Back {e}") from None
        return (torch.from_numpy(np.stack(composites)),)
