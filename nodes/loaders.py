"""Model loader nodes: HyperStyle model, W-encoder, generator, ReStyle-e4e, direction; and Unload."""
from __future__ import annotations

import gc
import logging
import threading
import weakref
from pathlib import Path

from ..hyperstyle_core.editing.styleclip import load_clip
from ..hyperstyle_core import check_kind, load, read_info, wrong_kind_message
from . import _comfy
from ._files import picker

log = logging.getLogger("hyperstyle.nodes")

PRECISIONS = ["fp32", "fp16", "bf16"]
_PRECISION_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

# Models stay alive while a ComfyUI output cache (or a running node) holds them; when ComfyUI frees memory and drops
# its cache, they go away with it. Several loader nodes naming the same file as the same kind share one instance.
_cache: "weakref.WeakValueDictionary[tuple, object]" = weakref.WeakValueDictionary()
_strong: dict[tuple, object] = {}
_lock = threading.Lock()


def _cache_key(path: Path, device, precision: str, kind: str) -> tuple:
    # The kind is part of the key: a file loaded by one loader must not come back from another loader unchecked.
    st = path.stat()
    return (str(path.resolve()), st.st_mtime_ns, st.st_size, str(device), precision, kind)


def _cached(key: tuple):
    model = _cache.get(key)
    return _strong.get(key) if model is None else model


def load_cached(name: str, kind: str, precision: str = "fp32"):
    """Load `name` from the hyperstyle model folders as `kind`, reusing a live instance. Whatever is returned,
    loaded now or cached, is checked to be of `kind` (ValueError naming the file and what to choose)."""

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    path = _comfy.resolve_model_path(name)
    device = _comfy.torch_device()
    key = _cache_key(path, device, precision, kind)
    with _lock:
        model = _cached(key)
        if model is None:
            log.info("HyperStyle: loading %s (%s) on %s", path.name, kind, device)
            model = load(path, device=device, dtype=_PRECISION_DTYPES[precision], expect=kind)
            try:
                _cache[key] = model
            except TypeError:  # objects without weakref support (directions) are tiny: keep them strongly
                _strong[key] = model
    check_kind(model, kind, path.name)
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


def _file_input(kind: str, tooltip: str):
    return picker(kind, tooltip + " Lists only files of this kind; original .pt files say how to convert them.")


def _precision_input():
    return (PRECISIONS, {"default": "fp32", "tooltip": "fp32 matches the official outputs; fp16/bf16 halve memory "
                                                       "on a GPU (not available on CPU)."})


def _validate_file(name: str, kind: str) -> bool | str:
    # This VALIDATE_INPUTS turns off ComfyUI's own check against the list, so names that leave the model folders
    # ("../../x.safetensors", "/abs/x.safetensors") and files of another kind (a workflow naming a W-encoder in
    # HyperStyle Load Model) are refused here, before anything runs (and again when loading).
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
        found = read_info(_comfy.resolve_model_path(name))["kind"]
    except (OSError, ValueError) as e:      # not there, or not a converted model (the message says what it is)
        return str(e)
    return True if found == kind else wrong_kind_message(Path(name).name, found, kind)


class _Loader:
    CATEGORY = "HyperStyle/loaders"
    FUNCTION = "execute"
    KIND = ""       # the model kind (hyperstyle_core.KINDS) the loader lists and loads

    @classmethod
    def VALIDATE_INPUTS(cls, model_file):
        return _validate_file(model_file, cls.KIND)


class HyperStyleLoadModel(_Loader):
    KIND = "hyperstyle"
    DESCRIPTION = ("Loads a converted HyperStyle model (hypernetwork + its StyleGAN2 generator + latent_avg), e.g. "
                   "hyperstyle_ffhq.safetensors. Also outputs its generator for HyperStyle Generate.")
    RETURN_TYPES = ("HYPERSTYLE_MODEL", "HYPERSTYLE_GENERATOR")
    RETURN_NAMES = ("model", "generator")
    OUTPUT_TOOLTIPS = ("HyperStyle model for Encode / Refine.", "The model's StyleGAN2 generator.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input(cls.KIND, "Converted HyperStyle model, e.g. hyperstyle_ffhq.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        model = load_cached(model_file, self.KIND, precision)
        return (model, model.generator)


class HyperStyleLoadWEncoder(_Loader):
    KIND = "w_encoder"
    DESCRIPTION = "Loads a converted W-encoder (e.g. faces_w_encoder.safetensors), the start point of HyperStyle."
    RETURN_TYPES = ("HYPERSTYLE_W_ENCODER",)
    RETURN_NAMES = ("w_encoder",)
    OUTPUT_TOOLTIPS = ("W-encoder for HyperStyle Encode.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input(cls.KIND, "Converted W-encoder of the same domain, e.g. "
                                                "faces_w_encoder.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, self.KIND, precision),)


class HyperStyleLoadGenerator(_Loader):
    KIND = "stylegan2"
    DESCRIPTION = ("Loads any converted rosinality-format StyleGAN2 generator: FFHQ, Toonify, StyleGAN-NADA, cars, "
                   "AFHQ ... (e.g. toonify.safetensors) for Generate or Transfer Deltas.")
    RETURN_TYPES = ("HYPERSTYLE_GENERATOR",)
    RETURN_NAMES = ("generator",)
    OUTPUT_TOOLTIPS = ("StyleGAN2 generator.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input(cls.KIND, "Converted generator, e.g. stylegan2-ffhq-config-f.safetensors "
                                                "or toonify.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, self.KIND, precision),)


class HyperStyleLoadReStyle(_Loader):
    KIND = "restyle_e4e"
    DESCRIPTION = ("Loads the converted ReStyle-e4e encoder (restyle_e4e_ffhq_encode.safetensors), which gives the "
                   "W+ latents used for domain adaptation (Toonify).")
    RETURN_TYPES = ("HYPERSTYLE_RESTYLE",)
    RETURN_NAMES = ("restyle",)
    OUTPUT_TOOLTIPS = ("ReStyle-e4e encoder for HyperStyle Encode ReStyle.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input(cls.KIND, "Converted ReStyle-e4e encoder, e.g. "
                                                "restyle_e4e_ffhq_encode.safetensors."),
            "precision": _precision_input(),
        }}

    def execute(self, model_file, precision="fp32"):
        return (load_cached(model_file, self.KIND, precision),)


class HyperStyleLoadDirection(_Loader):
    KIND = "direction"
    DESCRIPTION = ("Loads a latent edit direction: an official InterFaceGAN file (age, smile, pose) converted to "
                   "safetensors, e.g. age.safetensors.")
    RETURN_TYPES = ("HYPERSTYLE_DIRECTION",)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("Direction for HyperStyle Latent Edit.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model_file": _file_input(cls.KIND, "Converted direction file, e.g. age.safetensors or "
                                                "smile.safetensors."),
        }}

    def execute(self, model_file):
        return (load_cached(model_file, self.KIND),)


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
    key = _cache_key(path, device, "fp32", "clip")
    with _lock:
        model = _cache.get(key)
        if model is None:
            model = load_clip(path, device=device)
            _cache[key] = model
        return model
