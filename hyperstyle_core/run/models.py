"""The models of a folder run: found in the models folder (or given as files), loaded once and checked up front."""
from __future__ import annotations

import os
from pathlib import Path

from ..deltas import GeneratorSignature
from ..editing.directions import apply_direction, load_direction
from ..io.checkpoints import DEFAULT_FILES, load
from .options import RunOptions, transfer_label

__all__ = ["resolve_model_file", "resolve_direction", "RunModels"]


def resolve_model_file(spec: str | os.PathLike, models: Path, what: str) -> Path:
    """A model given as a path, a file name in `models`, or a bare name (-> models/name.safetensors)."""
    p = Path(spec)
    for candidate in (p, models / p, models / f"{p}.safetensors"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{what} {spec} was not found (looked for {p}, {models / p} and "
                            f"{models / (str(p) + '.safetensors')}). Download it with `hyperstyle download "
                            f"{transfer_label(p)}` or pass the path of a converted .safetensors file.")


def resolve_direction(name: str, models: Path) -> Path:
    """Direction `name` -> models/name.safetensors, else models/name.pt (the official file also loads)."""
    for candidate in (models / f"{name}.safetensors", models / f"{name}.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"edit {name!r}: no {name}.safetensors or {name}.pt in {models}. Download it with "
                            f"`hyperstyle download {name}` (InterFaceGAN: age, smile, pose) or convert the "
                            f"direction file into that folder.")


def _model_path(explicit: str | os.PathLike | None, models: Path, kind: str) -> Path:
    """The file given for a model, else its official name in the models folder."""
    return Path(explicit) if explicit else models / DEFAULT_FILES[kind]


class RunModels:
    """Everything a run needs, loaded once; each file is checked against the HyperStyle model up front.

    Attributes: hs (HyperStyle model), we (W-encoder), restyle (ReStyle-e4e encoder, for transfers of photos),
    directions (edit name -> LatentDirection), transfers (label -> Generator); absent models are None / empty.
    """

    def __init__(self, options: RunOptions, need_invert: bool):
        models = Path(options.models)
        p = options.products
        self.hs = self.we = self.restyle = None
        self.directions, self.transfers = {}, {}
        wants_edits = "edits" in p and options.edits
        wants_transfers = "transfers" in p and options.transfers
        if need_invert or wants_edits:
            self.hs = load(_model_path(options.hyperstyle, models, "hyperstyle"), options.device, options.dtype,
                           expect="hyperstyle")
        if need_invert:
            self.we = load(_model_path(options.w_encoder, models, "w_encoder"), options.device, options.dtype,
                           expect="w_encoder")
        if wants_edits:
            for e in options.edits:
                if e.name not in self.directions:
                    direction = load_direction(resolve_direction(e.name, models))
                    try:
                        apply_direction(self.hs.latent_avg[None].float().cpu(), direction, 1.0)
                    except ValueError as err:
                        raise ValueError(f"edit {e.name!r} does not fit the HyperStyle model: {err}. Use a "
                                         f"direction made for this model's latent space") from None
                    self.directions[e.name] = direction
        if wants_transfers:
            for spec in options.transfers:
                path = resolve_model_file(spec, models, "transfer generator")
                gen = load(path, options.device, options.dtype, expect="stylegan2")
                if self.hs is not None:
                    problem = GeneratorSignature.of(self.hs.generator).mismatch(GeneratorSignature.of(gen))
                    if problem:
                        raise ValueError(f"transfer generator {path.name} does not match the HyperStyle model's "
                                         f"generator ({problem}); use a fine-tuned generator of the same "
                                         f"architecture, e.g. toonify.safetensors for hyperstyle_ffhq")
                self.transfers[transfer_label(spec)] = gen
            if need_invert and options.transfer_latent == "restyle":
                path = _model_path(options.restyle, models, "restyle_e4e")
                if not path.is_file():
                    raise FileNotFoundError(
                        f"--transfer renders ReStyle-e4e latents as the official domain adaptation does, but "
                        f"{path} does not exist. Download it with `hyperstyle download "
                        f"{Path(DEFAULT_FILES['restyle_e4e']).stem}`, or pass --transfer-latent w to use the "
                        f"W-encoder latents instead.")
                self.restyle = load(path, options.device, options.dtype, expect="restyle_e4e")
