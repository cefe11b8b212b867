"""hyperstyle_core: a faithful pure-PyTorch HyperStyle (Alaluf, Tov et al., CVPR 2022).

Public API:
    convert(src.pt, out_dir)            official checkpoint -> safetensors
    load(path, device, dtype)           safetensors -> HyperStyleModel / WEncoderModel / ReStyleE4EModel / Generator
    invert(images, hyperstyle, w_encoder, n_iters=5) -> InversionResult
    generate(generator, latent, deltas=None, randomize_noise=False) -> [B, 3, H, W]
    encode_in_batches / refine_in_batches / generate_in_batches / restyle_in_batches   the same over many images,
                                        a batch at a time (results equal the unbatched calls)
    WeightDeltas, GeneratorSignature
    run_folder(input, output, RunOptions(...)) -> RunSummary   the folder runner behind `hyperstyle run`

The names are resolved on first use (PEP 562 `__getattr__`): `import hyperstyle_core` costs nothing, so the command
line answers `--help` without importing torch; `hyperstyle_core.load` or `from hyperstyle_core import load` imports
the module that defines it.
"""
from __future__ import annotations

import importlib

from . import _legacy

# public name -> the module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    "interpolate": "editing.animation", "save_animation": "editing.animation",
    "GanSpaceDirections": "editing.ganspace", "compute_ganspace": "editing.ganspace",
    "ganspace_edit": "editing.ganspace", "load_ganspace": "editing.ganspace", "save_ganspace": "editing.ganspace",
    "fit_direction": "editing.interfacegan", "save_direction": "io.directions",
    "AlignmentInfo": "face.info", "align_face": "face.alignment", "align_image": "face.alignment",
    "detect_faces": "face.alignment", "paste_back": "face.paste_back",
    "convert": "io.convert", "load": "io.checkpoints", "read_info": "io.checkpoints",
    "invert": "inversion", "refine": "inversion", "generate": "inversion", "restyle_e4e_invert": "inversion",
    "w_encode": "inversion", "InversionResult": "inversion", "ReStyleResult": "inversion",
    "LatentDirection": "editing.directions", "apply_direction": "editing.directions",
    "load_direction": "editing.directions", "sweep_direction": "editing.directions",
    "WeightDeltas": "deltas", "GeneratorSignature": "deltas", "TOONIFY_LAYERS": "deltas",
    "HyperStyleModel": "nn.networks", "WEncoderModel": "nn.networks", "ReStyleE4EModel": "nn.networks",
    "Generator": "nn.stylegan2", "GeneratorConfig": "nn.stylegan2",
    "run_folder": "run.runner", "RunOptions": "run.options", "OutputFolderError": "run.manifest",
    # folders of pictures: listing them, reading them as one batch, saving a batch under the input names
    "list_folder": "io.folders", "printable": "io.folders", "read_image_batch": "io.images", "FIT_MODES": "io.images",
    "DEFAULT_MAX_PIXELS": "io.images", "DEFAULT_MAX_BATCH_PIXELS": "io.images", "named_png_files": "io.run_folder",
    # the inversion recipes over many images, a batch at a time
    "batch_ranges": "batched", "encode_in_batches": "batched", "refine_in_batches": "batched",
    "generate_in_batches": "batched", "restyle_in_batches": "batched", "EncodedBatch": "batched",
    "RefinedBatch": "batched",
    # the official files and the kinds of model files
    "KINDS": "io.registry", "KIND_TITLES": "io.registry", "DEFAULT_FILES": "io.registry",
    "default_files": "io.registry", "official_names": "io.registry", "original_file_kind": "io.registry",
    "kind_of": "io.checkpoints", "check_kind": "io.checkpoints", "wrong_kind_message": "io.checkpoints",
    # files, images and helpers the ComfyUI nodes use
    "resolve_device": "devices", "format_name": "io.formats", "read_safetensors_header": "io.formats",
    "atomic_path": "io.files", "MIN_IMAGE_SIDE": "io.images", "to_unit_range": "io.images",
    "to_pil_frames": "editing.animation", "load_latent": "io.latents", "save_latent": "io.latents",
    "sweep_factors": "editing.directions", "AlignedBatch": "face.batch", "align_batch": "face.batch",
    "paste_back_batch": "face.batch",
}
# the package's own modules, reachable as attributes (`hyperstyle_core.nn`) as when everything was imported eagerly
_SUBMODULES = frozenset({"nn", "io", "face", "editing", "run", "cli", "deltas", "inversion", "batched", "devices"})

__all__ = list(_EXPORTS)
__version__ = "0.2.0"


def __getattr__(name: str):
    """Import a public name's module on first use and keep the value (later lookups skip this function)."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


_legacy.install(__name__)     # release 0.1 module paths keep importing, with a DeprecationWarning
