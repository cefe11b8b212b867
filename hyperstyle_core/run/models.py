"""The models of a folder run: found in the models folder (or given as files) and identified before anything is
written (`resolve_model_files`), then loaded once, only those the pending work needs, and checked (`RunModels`)."""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..deltas import GeneratorSignature
from ..editing.directions import apply_direction, load_direction
from ..io.checkpoints import DEFAULT_FILES, load
from ..io.formats import read_safetensors_metadata
from ..io.registry import REGISTRY, official_names
from .options import RunOptions, transfer_label
from .state import ModelIds, model_identity, wants_restyle_latent

__all__ = ["resolve_model_file", "resolve_direction", "resolve_model_files", "ModelFiles", "RunModels",
           "missing_model_message", "RESTYLE_DOWNLOAD"]

RESTYLE_DOWNLOAD = Path(DEFAULT_FILES["restyle_e4e"]).stem     # `hyperstyle download restyle_e4e_ffhq_encode`
_REGISTRY_DIRECTIONS = official_names("direction")


def missing_model_message(path: Path, what: str) -> str:
    """What to do when a model file the run needs is not there: download the official files, or convert own."""
    return (f"{what} {path} does not exist. Download the official face models with `hyperstyle download faces` "
            f"(`--mirror URL` to take them from a local copy), or convert your own .pt checkpoints with "
            f"`hyperstyle convert FILE.pt --out {path.parent}`.")


def _close_names(name: str, known: set[str]) -> str:
    """" Did you mean a, b?" for the known names close to `name`; "" when none is."""
    close = difflib.get_close_matches(name, sorted(known), n=3, cutoff=0.6)
    return f" Did you mean {' or '.join(close)}?" if close else ""


def _folder_kinds(models: Path, kind: str) -> set[str]:
    """Stems of the converted files of `kind` in the models folder (read from their headers only)."""
    found = set()
    for f in sorted(models.glob("*.safetensors")) if models.is_dir() else []:
        try:
            if read_safetensors_metadata(f).get("kind") == kind:
                found.add(f.stem)
        except (ValueError, OSError):   # not ours or damaged: not a suggestion
            continue
    return found


def resolve_model_file(spec: str | os.PathLike, models: Path, what: str) -> Path:
    """A model given as a path, a file name in `models`, or a bare name (-> models/name.safetensors)."""
    p = Path(spec)
    for candidate in (p, models / p, models / f"{p}.safetensors"):
        if candidate.is_file():
            return candidate
    label = transfer_label(p)
    if label in REGISTRY:
        todo = f"Download it with `hyperstyle download {label}`"
    else:
        todo = ("Download an official one (`hyperstyle download --list`: toonify, pixar, sketch, disney_princess)"
                + _close_names(label, _folder_kinds(models, "stylegan2") | set(REGISTRY)))
    raise FileNotFoundError(f"{what} {spec} was not found (looked for {p}, {models / p} and "
                            f"{models / (str(p) + '.safetensors')}). {todo}, or pass the path of a converted "
                            f".safetensors file.")


def resolve_direction(name: str, models: Path) -> Path:
    """Direction `name` -> models/name.safetensors, else models/name.pt (the official file also loads)."""
    for candidate in (models / f"{name}.safetensors", models / f"{name}.pt"):
        if candidate.is_file():
            return candidate
    if name in _REGISTRY_DIRECTIONS:
        todo = f"Download it with `hyperstyle download {name}`"
    else:
        known = _folder_kinds(models, "direction") | set(_REGISTRY_DIRECTIONS)
        todo = (f"{_close_names(name, known).strip()} The official InterFaceGAN directions are "
                f"{', '.join(_REGISTRY_DIRECTIONS)} (`hyperstyle download {' '.join(_REGISTRY_DIRECTIONS)}`); "
                f"your own direction file must be converted into that folder (`hyperstyle convert`)").strip()
    raise FileNotFoundError(f"edit {name!r}: no {name}.safetensors or {name}.pt in {models}. {todo}.")


def _model_path(explicit: str | os.PathLike | None, models: Path, kind: str) -> Path:
    """The file given for a model, else its official name in the models folder."""
    return Path(explicit) if explicit else models / DEFAULT_FILES[kind]


@dataclass
class ModelFiles:
    """The model files of a run (None: not used) and their identities (`ModelIds`)."""
    hyperstyle: Path | None = None
    w_encoder: Path | None = None
    restyle: Path | None = None
    directions: dict[str, Path] = field(default_factory=dict)
    transfers: dict[str, Path] = field(default_factory=dict)
    ids: ModelIds = field(default_factory=ModelIds)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(missing_model_message(path, what))
    return path


def restyle_missing_message(path: Path) -> str:
    return (f"--transfer renders ReStyle-e4e latents as the official domain adaptation does, but {path} does not "
            f"exist. Download it with `hyperstyle download {RESTYLE_DOWNLOAD}`, or pass --transfer-latent w to use "
            f"the W-encoder latents instead.")


def resolve_model_files(options: RunOptions, photos: bool) -> ModelFiles:
    """Find every model file the options name and read their identities, before anything is written.

    Args:
        options: the run's options.
        photos: some inputs are photos (inverted), not saved latents.
    Raises:
        FileNotFoundError saying what to download or convert; ValueError for a file that is not a model.
    """
    models = Path(options.models)
    files = ModelFiles()
    if not options.needs_models:
        return files
    p = options.products
    edits = "edits" in p and bool(options.edits)
    transfers = "transfers" in p and bool(options.transfers)
    if photos or edits:
        files.hyperstyle = _existing(_model_path(options.hyperstyle, models, "hyperstyle"), "the HyperStyle model")
    if photos:
        files.w_encoder = _existing(_model_path(options.w_encoder, models, "w_encoder"), "the W-encoder")
    if edits:
        files.directions = {e.name: resolve_direction(e.name, models) for e in options.edits}
    if transfers:
        files.transfers = {transfer_label(s): resolve_model_file(s, models, "transfer generator")
                           for s in options.transfers}
        restyle = _model_path(options.restyle, models, "restyle_e4e")
        if photos and wants_restyle_latent(options) and not restyle.is_file():
            raise FileNotFoundError(restyle_missing_message(restyle))
        files.restyle = restyle if options.transfer_latent == "restyle" and restyle.is_file() else None
    files.ids = ModelIds(
        hyperstyle=model_identity(files.hyperstyle) if files.hyperstyle else None,
        w_encoder=model_identity(files.w_encoder) if files.w_encoder else None,
        restyle=model_identity(files.restyle) if files.restyle else None,
        directions={name: model_identity(path) for name, path in files.directions.items()},
        transfers={label: model_identity(path) for label, path in files.transfers.items()})
    return files


class RunModels:
    """The models of a run, each loaded on first need (`need`) and checked against the HyperStyle model.

    Attributes: hs (HyperStyle model), we (W-encoder), restyle (ReStyle-e4e encoder), directions (edit name ->
    LatentDirection), transfers (label -> Generator); None / empty until loaded.
    """

    def __init__(self, options: RunOptions, files: ModelFiles):
        self.options, self.files = options, files
        self.hs = self.we = self.restyle = None
        self.directions, self.transfers = {}, {}

    def _load(self, path: Path, kind: str):
        return load(path, self.options.device, self.options.dtype, expect=kind)

    def need(self, invert: bool = False, edits: bool = False, transfers: bool = False,
             restyle: bool = False) -> "RunModels":
        """Load what is asked for and not loaded yet (the HyperStyle model first: the others are checked
        against it)."""
        f = self.files
        if (invert or edits) and self.hs is None and f.hyperstyle is not None:
            self.hs = self._load(f.hyperstyle, "hyperstyle")
        if invert and self.we is None and f.w_encoder is not None:
            self.we = self._load(f.w_encoder, "w_encoder")
        if edits:
            for name, path in f.directions.items():
                if name not in self.directions:
                    self.directions[name] = self._checked_direction(name, path)
        if transfers:
            for label, path in f.transfers.items():
                if label not in self.transfers:
                    self.transfers[label] = self._checked_generator(path)
        if restyle and self.restyle is None:
            if f.restyle is None:
                raise FileNotFoundError(restyle_missing_message(_model_path(self.options.restyle,
                                                                            Path(self.options.models),
                                                                            "restyle_e4e")))
            self.restyle = self._load(f.restyle, "restyle_e4e")
        return self

    def _checked_direction(self, name: str, path: Path):
        direction = load_direction(path)
        try:
            apply_direction(self.hs.latent_avg[None].float().cpu(), direction, 1.0)
        except ValueError as err:
            raise ValueError(f"edit {name!r} does not fit the HyperStyle model: {err}. Use a direction made for "
                             f"this model's latent space") from None
        return direction

    def _checked_generator(self, path: Path):
        gen = self._load(path, "stylegan2")
        if self.hs is not None:
            problem = GeneratorSignature.of(self.hs.generator).mismatch(GeneratorSignature.of(gen))
            if problem:
                raise ValueError(f"transfer generator {path.name} does not match the HyperStyle model's generator "
                                 f"({problem}); use a fine-tuned generator of the same architecture, e.g. "
                                 f"toonify.safetensors for hyperstyle_ffhq")
        return gen
