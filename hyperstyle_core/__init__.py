"""hyperstyle_core: a faithful pure-PyTorch HyperStyle (Alaluf, Tov et al., CVPR 2022).

Public API:
    convert(src.pt, out_dir)            official checkpoint -> safetensors
    load(path, device, dtype)           safetensors -> HyperStyleModel / WEncoderModel / ReStyleE4EModel / Generator
    invert(images, hyperstyle, w_encoder, n_iters=5) -> InversionResult
    generate(generator, latent, deltas=None, randomize_noise=False) -> [B, 3, H, W]
    WeightDeltas, GeneratorSignature
    run_folder(input, output, RunOptions(...)) -> RunSummary   the folder runner behind `hyperstyle run`
"""
from . import _legacy
from .face.alignment import align_face, align_image, detect_faces
from .face.info import AlignmentInfo
from .face.paste_back import paste_back
from .io.checkpoints import load, read_info
from .io.convert import convert
from .deltas import TOONIFY_LAYERS, GeneratorSignature, WeightDeltas
from .editing.animation import interpolate, save_animation
from .editing.ganspace import GanSpaceDirections, compute_ganspace, ganspace_edit, load_ganspace, save_ganspace
from .editing.interfacegan import fit_direction
from .io.directions import save_direction
from .editing.directions import LatentDirection, apply_direction, load_direction, sweep_direction
from .inversion import InversionResult, ReStyleResult, generate, invert, refine, restyle_e4e_invert, w_encode
from .nn.networks import HyperStyleModel, ReStyleE4EModel, WEncoderModel
from .nn.stylegan2 import Generator, GeneratorConfig
from .run.manifest import OutputFolderError
from .run.options import RunOptions
from .run.runner import run_folder

__all__ = [
    "interpolate", "save_animation", "GanSpaceDirections", "compute_ganspace", "ganspace_edit", "load_ganspace",
    "save_ganspace", "fit_direction", "save_direction",
    "AlignmentInfo", "align_face", "align_image", "detect_faces", "paste_back",
    "convert", "load", "read_info", "invert", "refine", "LatentDirection", "apply_direction", "load_direction",
    "sweep_direction", "generate", "restyle_e4e_invert", "w_encode", "InversionResult", "ReStyleResult",
    "WeightDeltas", "GeneratorSignature", "TOONIFY_LAYERS", "HyperStyleModel", "WEncoderModel", "ReStyleE4EModel",
    "Generator", "GeneratorConfig", "run_folder", "RunOptions", "OutputFolderError",
]
__version__ = "0.2.0"

_legacy.install(__name__)     # release 0.1 module paths keep importing, with a DeprecationWarning
