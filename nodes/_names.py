"""Node names: the short name messages use, and the display name, which adds the task words users search for.

The frontend's node search (ComfyUI 0.8, frontend 1.35) matches node ids and display names only; it has no search
aliases. So "invert", "toonify", "edit age" or "morph" must appear in a display name to find the node. Every display
name starts with its short name, so a message naming a node ("connect HyperStyle Load Model") matches what the
canvas shows. Node ids never change: saved workflows refer to them.
"""
from __future__ import annotations

# node id -> (short name, search words shown in brackets after it, "" for none)
NAMES: dict[str, tuple[str, str]] = {
    "HyperStyleLoadModel": ("HyperStyle Load Model", ""),
    "HyperStyleLoadWEncoder": ("HyperStyle Load W-Encoder", ""),
    "HyperStyleLoadGenerator": ("HyperStyle Load Generator", "StyleGAN2, Toonify"),
    "HyperStyleLoadReStyle": ("HyperStyle Load ReStyle-e4e", "for Toonify"),
    "HyperStyleLoadDirection": ("HyperStyle Load Direction", "age, smile, pose"),
    "HyperStyleUnloadModels": ("HyperStyle Unload Models", "free memory"),
    "HyperStyleAlignFace": ("HyperStyle Align Face", "crop"),
    "HyperStylePasteBack": ("HyperStyle Paste Back", "face into photo"),
    "HyperStyleEncode": ("HyperStyle Encode", "invert photo to W"),
    "HyperStyleEncodeReStyle": ("HyperStyle Encode ReStyle", "invert for Toonify"),
    "HyperStyleRefine": ("HyperStyle Refine", "invert: weight deltas"),
    "HyperStyleGenerate": ("HyperStyle Generate", "render latent"),
    "HyperStyleLatentEdit": ("HyperStyle Latent Edit", "age, smile, pose"),
    "HyperStyleLatentEditSweep": ("HyperStyle Latent Edit Sweep", "age animation"),
    "HyperStyleLoadGanSpace": ("HyperStyle Load GANSpace", ""),
    "HyperStyleComputeGanSpace": ("HyperStyle Compute GANSpace", ""),
    "HyperStyleGanSpaceEdit": ("HyperStyle GANSpace Edit", "car pose, colour"),
    "HyperStyleFitDirection": ("HyperStyle Fit Direction", "custom edit"),
    "HyperStyleStyleCLIPEdit": ("HyperStyle StyleCLIP Edit", "text prompt"),
    "HyperStyleComputeStyleCLIPDirections": ("HyperStyle Compute StyleCLIP Directions", ""),
    "HyperStyleInterpolate": ("HyperStyle Interpolate", "morph two faces"),
    "HyperStyleSaveAnimation": ("HyperStyle Save Animation", "GIF, WebP"),
    "HyperStyleTransferDeltas": ("HyperStyle Transfer Deltas", "Toonify, domain"),
    "HyperStyleSaveDeltas": ("HyperStyle Save Deltas", ""),
    "HyperStyleLoadDeltas": ("HyperStyle Load Deltas", ""),
    "HyperStyleSaveLatent": ("HyperStyle Save Latent", ""),
    "HyperStyleLoadLatent": ("HyperStyle Load Latent", ""),
    "HyperStyleLoadImageFolder": ("HyperStyle Load Image Folder", "batch"),
    "HyperStyleSaveImagesNamed": ("HyperStyle Save Images Named", ""),
    "HyperStyleCompare": ("HyperStyle Compare", "metrics: LPIPS, ID, MS-SSIM"),
}


def short_name(node_id: str) -> str:
    """The name messages use for a node, e.g. 'HyperStyle Encode'."""
    return NAMES[node_id][0]


def display_name(node_id: str) -> str:
    """The name the canvas and the search show, e.g. 'HyperStyle Encode (invert photo to W)'."""
    short, words = NAMES[node_id]
    return f"{short} ({words})" if words else short
