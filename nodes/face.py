"""Face nodes: FFHQ alignment (dlib) of a batch, and paste-back of (edited) aligned faces into the photos."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..hyperstyle_core.face.alignment import align_image
from ..hyperstyle_core.face.paste_back import paste_back
from . import _comfy
from ._images import to_rgb

FACE_CHOICES = ["largest", "all", "index"]
NO_FACE_CHOICES = ["error", "skip", "passthrough"]


@dataclass(frozen=True)
class AlignedBatch:
    """HYPERSTYLE_ALIGNMENT: for each aligned output image, its source image index and AlignmentInfo (None for a
    pass-through crop, which has nothing to paste back)."""
    entries: tuple[tuple[int, object], ...]
    source_count: int

    def __len__(self) -> int:
        return len(self.entries)


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
        crops, entries = [], []
        for i in range(images.shape[0]):
            name = f"image {i + 1} of {images.shape[0]}"
            photo = images[i].float().cpu().numpy()
            for crop, info in align_image(photo, output_size, choice, on_no_face, name, image_index=i):
                crops.append(torch.from_numpy(crop.astype(np.float32) / 255.0))
                entries.append((i, info))
            progress.step()
        if not crops:
            raise ValueError(f"No face found in any of the {images.shape[0]} image(s), so nothing was aligned. Use "
                             f"photos with a visible face, or set on_no_face to 'passthrough'.")
        return (torch.stack(crops), AlignedBatch(tuple(entries), images.shape[0]))


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
        if photos.shape[0] != alignment.source_count:
            raise ValueError(f"HyperStyle Paste Back got {photos.shape[0]} original photo(s) but the alignment was "
                             f"made from {alignment.source_count}; connect the same images that went into Align Face")
        n = len(alignment)
        if faces.shape[0] % n:
            raise ValueError(f"HyperStyle Paste Back got {faces.shape[0]} faces for {n} aligned crop(s); give one "
                             f"face per crop (or the same number per crop, e.g. from an edit sweep)")
        frames = faces.shape[0] // n
        progress = _comfy.Progress(photos.shape[0] * frames)
        out = []
        for src in range(photos.shape[0]):
            for frame in range(frames):
                canvas = photos[src].float().cpu().numpy()
                for k, (source_index, info) in enumerate(alignment.entries):
                    if source_index != src or info is None:
                        continue
                    canvas = paste_back(canvas, faces[k * frames + frame].float().cpu().numpy(), info, feather)
                out.append(torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.float32)))
                progress.step()
        return (torch.stack(out),)
