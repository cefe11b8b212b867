"""Model loader nodes: HyperStyle model, W-encoder, generator, ReStyle-e4e, direction; and Unload."""
from __future__ import annotations

import gc
import logging
import threading
import weakref
from pathlib import Path

from ..hyperstyle_core.editing.styleclip import load_clip
from ..hyperstyle_core.io.checkpoints import load
from . import _comfy

log = logging.getLogger("hyperstyle.nodes")

PRECISIONS = ["fp32", "fp16", "bf16"]
_PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

# Models stay alive while a ComfyUI output cache (or a running node) holds them; when ComfyUI frees memory and drops
# its cache, they go away with it. Several loader nodes naming the same file share one instance.
_cache: "weakref.WeakValueDictionary[tuple, object]" = weakref.WeakValueDictionary()
_strong: dict[tuple, object] = {}
_lock = threading.Lock()


def _cache_key(path: Path, device, precision: str) -> tuple:
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device), precision)


def load_cached(name: str, kind: str, precision: str = "fp32"):
    """Load `name` from the hyperstyle model folders as `kind`, reusing a live instance."""

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = _comfy.resolve_model_path(name)
    device = _comfy.torch_device()
    key = _cache_key(path, device, precision)
    with _lock:
        model = _cache.get(key)
        if model is None:
            log.info("HyperStyle: loading %s (%s) on %s", path.name, kind, device)
            model = load(path, device=device, dtype=_PRECISION_DTYPES[precision], expect=kind)
            try:
                _cache[key] = model
            except TypeError:  # objects without weakref support (directions) are tiny: keep them strongly
                _strong[key] = model
        return model


def unload_all() -> int:
    """Forget every cached model (the caller's references keep theirs alive). Returns how many were cached."""
    with _lock:
        n = len(_cache) + len(_strong)
        _cache.clear()
        _strong.clear()
    gc.collect()
    _comfy.soft_empty_cache()
    return n


def _file_input(tooltip: str):
    return (_comfy.list_model_files(), {"tooltip": tooltip})


def _precision_input():
    return (PRECISIONS, {"default": "fp32", "tooltip": "fp32 matches the official outputs; fp16/bf16 halve memory "
                                                       "on a GPU (not available on CPU)."})


def _validate_file(name: str) -> bool | str:
    # This VALIDATE_INPUTS turns off ComfyUI's own check against the list, so names that leave the model folders
    # ("../../x.safetensors", "/abs/x.safetensors") are refused here (and again when loading).
    if not isinstance(name, str) or not name:
        return "choose a model file"
    try:
        _comfy.check_relative_name(name, "Model file", "the hyperstyle model folders")
    except ValueError as e:
        return str(e)
    if Path(name).suffix.lower() in (".pt", ".pth"):
        return (f"{name} is an original PyTorch checkpoint, which is never unpickled at run time. Convert it once "
                f"with `python -m hyperstyle_core convert {Path(name).name} --out ComfyUI/models/hyperstyle/` and "
                f"choose the .safetensors file.")
    try:
        _comfy.resolve_model_path(name)
    except FileNotFoundError as e:
        return str(e)
    return True


class _Loader:
    CATEGORY = "HyperStyle/loaders"
    FUNCTION = "execute"
    KIND = ""

    @classmethod
    def VALIDATE_INPUTS(cls, model_file):
        return _validate_file(model_file)


class HyperStyleLoadModel(_Loader):
    DESCRIPTION = ("Loads a converted HyperStyle model (hypernetwork + its StyleGAN2 generator + latent_avg), e.g. "
                   "hyperstyle_ffhq.safetensors. Also outputs its generator for HyperStyle Generate.")
    RETURN_TYPES = ("HYPERSTYLE_MODEL", "HYPERSTYLE_GENERATOR")
    RETURN_NAMES = ("model", "generator")
    OUTPUT_TOOLTIPS = ("HyperStyle model for Encode / Refine.", "The model's StyleGAN2 generator.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input("Converted HyperStyle model, e.g. hyperstyle_ffhq.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        model = load_cached(model_file, "hyperstyle", precision)
        return (model, model.generator)


class HyperStyleLoadWEncoder(_Loader):
    DESCRIPTION = "Loads a converted W-encoder (e.g. faces_w_encoder.safetensors), the start point of HyperStyle."
    RETURN_TYPES = ("HYPERSTYLE_W_ENCODER",)
    RETURN_NAMES = ("w_encoder",)
    OUTPUT_TOOLTIPS = ("W-encoder for HyperStyle Encode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input("Converted W-encoder of the same domain, e.g. faces_w_encoder.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, "w_encoder", precision),)


class HyperStyleLoadGenerator(_Loader):
    DESCRIPTION = ("Loads any converted rosinality-format StyleGAN2 generator: FFHQ, Toonify, StyleGAN-NADA, cars, "
                   "AFHQ ... (e.g. toonify.safetensors) for Generate or Transfer Deltas.")
    RETURN_TYPES = ("HYPERSTYLE_GENERATOR",)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("StyleGAN2 generator.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input("Converted generator, e.g. stylegan2-ffhq-config-f.safetensors or "
                                      "toonify.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, "stylegan2", precision),)


class HyperStyleLoadReStyle(_Loader):
    DESCRIPTION = ("Loads the converted ReStyle-e4e encoder (restyle_e4e_ffhq_encode.safetensors), which gives the "
                   "W+ latents used for domain adaptation (Toonify).")
    RETURN_TYPES = ("HYPERSTYLE_RESTYLE",)
    RETURN_NAMES = ("restyle",)
    OUTPUT_TOOLTIPS = ("ReStyle-e4e encoder for HyperStyle Encode ReStyle.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input("Converted ReStyle-e4e encoder, e.g. restyle_e4e_ffhq_encode.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, "restyle_e4e", precision),)


class HyperStyleLoadDirection(_Loader):
    DESCRIPTION = ("Loads a latent edit direction: an official InterFaceGAN file (age, smile, pose) converted to "
                   "safetensors, e.g. age.safetensors.")
    RETURN_TYPES = ("HYPERSTYLE_DIRECTION",)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("Direction for HyperStyle Latent Edit.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input("Converted direction file, e.g. age.safetensors or smile.safetensors."),
        }}

    def execute(self, model_file):
        return (load_cached(model_file, "direction"),)


class HyperStyleUnloadModels:
    CATEGORY = "HyperStyle/loaders"
    FUNCTION = "execute"
    DESCRIPTION = ("Drops HyperStyle's model cache and frees GPU memory once the images pass through. Put it after "
                   "the last HyperStyle node; the models reload on the next run.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The same images, unchanged.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "Any images; passed through once models are freed."})}}

    def execute(self, images):
        n = unload_all()
        log.info("HyperStyle: released %d cached model(s)", n)
        return (images,)


def load_clip_cached(name: str):
    """A CLIP model from the hyperstyle model folders (shares the model cache)."""

    path = _comfy.resolve_model_path(name)
    device = _comfy.torch_device()
    key = _cache_key(path, device, "clip")
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = load_clip(path, device=device)
            _cache[key] = model
        return model
