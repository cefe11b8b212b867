"""CLIP model files and the image encoder: read, build and convert user-given checkpoints; embed generator images.

CLIP weights are never downloaded: `load_clip(path)` reads a ViT checkpoint the user put there (safetensors, a plain
state-dict .pt, or OpenAI's TorchScript archive, whose tensors are read without running `torch.jit.load`) and
builds the model with the optional `clip` package's own `clip.model.build_model`.
"""
from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from ...io.formats import check_format, format_name, read_safetensors_metadata, write_safetensors
from ...io.unpickle import check_loaded_tensors, is_torchscript_archive, read_torchscript_tensors
from .text import import_clip, module_device

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def read_clip_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors of a CLIP checkpoint without executing code from the file.

    Reads `.safetensors`, OpenAI's TorchScript archives (ViT-B-32.pt: data.pkl is read with an unpickler that
    admits only module stand-ins and tensor storages; `torch.jit.load` is never called since it has no safe mode),
    and plain `torch.save`d state dicts (`torch.load(weights_only=True)`).

    Returns:
        {key: tensor} in the CLIP package's state-dict naming (dtype as stored, fp16 for OpenAI's files).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist. CLIP weights are never downloaded: put OpenAI's ViT-B-32.pt "
                                f"(or its .safetensors conversion) there")
    if zipfile.is_zipfile(path):
        if is_torchscript_archive(path):
            return read_torchscript_tensors(path)
    elif path.suffix.lower() in (".safetensors", ".sft"):
        meta = read_safetensors_metadata(path)
        # Plain state dicts (no format tag, or another tool's) load as they are; a file of ours must be CLIP weights.
        if format_name(meta) is not None:
            check_format(meta, "clip", path.name, "convert CLIP weights with convert_clip_to_safetensors")
        return load_file(str(path))
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path.name} could not be read as a CLIP state dict with weights_only=True "
                         f"({type(e).__name__}: {str(e)[:200]}). Use OpenAI's ViT-B-32.pt or a .safetensors file") \
            from None
    check_loaded_tensors(state, path.name)      # before anything copies a crafted stride-0 view
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path.name} does not hold a flat CLIP state dict")
    return dict(state)


def _clip_architecture(model: Any) -> dict[str, Any]:
    visual = model.visual
    return {"embed_dim": int(model.text_projection.shape[1]), "image_resolution": int(visual.input_resolution),
            "vit": hasattr(visual, "proj"), "context_length": int(model.context_length),
            "vocab_size": int(model.vocab_size), "transformer_width": int(model.ln_final.weight.shape[0])}


def _build_clip(state: Mapping[str, torch.Tensor], name: str) -> Any:
    clip = import_clip()
    if "visual.conv1.weight" not in state and "visual.layer1.0.conv1.weight" not in state:
        raise ValueError(f"{name} is not a CLIP checkpoint (no visual.conv1.weight); expected OpenAI's ViT-B/32 "
                         f"weights (ViT-B-32.pt) or their .safetensors conversion")
    weights = {k: v for k, v in state.items() if k not in ("input_resolution", "context_length", "vocab_size")}
    try:
        model = clip.model.build_model(dict(state))
        # build_model rounds the weights to fp16 (OpenAI's storage dtype); reload them at full precision.
        model.float()
        model.load_state_dict(weights)
    except (RuntimeError, KeyError, AssertionError) as e:
        raise ValueError(f"{name} does not fit the CLIP architecture: {str(e)[:300]}") from None
    return model.eval()


def load_clip(path: str | os.PathLike, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32) -> Any:
    """Build a CLIP model from a user-given checkpoint with the package's own `clip.model.build_model`.

    Args:
        path: `.safetensors` (see `convert_clip_to_safetensors`), OpenAI's TorchScript `ViT-B-32.pt`, or a
            `torch.save`d state dict. Read without running code from the file (see `read_clip_state_dict`).
        device: where the model goes.
        dtype: parameter dtype (float32 default; float16 halves memory on GPUs).
    Returns:
        A `clip.model.CLIP` in eval mode (`encode_text`, `encode_image`, `visual.input_resolution`).
    """
    path = Path(path)
    model = _build_clip(read_clip_state_dict(path), path.name)
    return model.to(device=device, dtype=dtype)


def convert_clip_to_safetensors(src: str | os.PathLike, dst: str | os.PathLike | None = None) -> Path:
    """Convert a CLIP checkpoint (e.g. OpenAI's ViT-B-32.pt) to safetensors once; tensors keep their dtype.

    The weights are checked by building the model before writing. Metadata: format, version, architecture JSON and
    the source file name.

    Returns:
        The written path (default: `src` with the suffix `.safetensors`).
    """
    src = Path(src)
    state = read_clip_state_dict(src)
    model = _build_clip(state, src.name)
    dst = src.with_suffix(".safetensors") if dst is None else Path(dst)
    if dst.resolve() == src.resolve():
        raise ValueError(f"{dst} would overwrite the source; pass another destination")
    meta = {"source": src.name, "architecture": json.dumps(_clip_architecture(model))}
    return write_safetensors(dst, state, "clip", meta)


def clip_image_preprocess(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Generator images -> CLIP image-encoder input.

    Mirrors CLIP's preprocess (shorter side to `resolution` with bicubic, centre crop, normalise) on tensors:
    antialiased bicubic resize instead of PIL's, and no uint8 round trip.

    Args:
        images: [B, 3, H, W] in [-1, 1] (clamped).
        resolution: CLIP input size (`clip_model.visual.input_resolution`, 224 for ViT-B/32).
    Returns:
        [B, 3, resolution, resolution] normalised with CLIP's mean and std.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images have shape {list(images.shape)}; expected [B, 3, H, W] in [-1, 1]")
    x = ((images.float().clamp(-1, 1) + 1) / 2)
    h, w = x.shape[2:]
    scale = resolution / min(h, w)
    new_h, new_w = max(resolution, round(h * scale)), max(resolution, round(w * scale))
    if (new_h, new_w) != (h, w):
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
    top, left = (new_h - resolution) // 2, (new_w - resolution) // 2
    x = x[:, :, top:top + resolution, left:left + resolution]
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def encode_images(clip_model: Any, images: torch.Tensor) -> torch.Tensor:
    """CLIP image embeddings of generator images [B, 3, H, W] in [-1, 1] -> [B, D] float32 (not normalised)."""
    resolution = int(clip_model.visual.input_resolution)
    device = module_device(clip_model)
    dtype = clip_model.visual.conv1.weight.dtype
    x = clip_image_preprocess(images.to(device), resolution).to(dtype)
    with torch.no_grad():
        return clip_model.encode_image(x).float()


__all__ = ["CLIP_MEAN", "CLIP_STD", "read_clip_state_dict", "load_clip", "convert_clip_to_safetensors",
           "clip_image_preprocess", "encode_images"]
