"""ReStyle-e4e latents for saved-latent inputs: a `--transfer-latent restyle` run over `_latent.safetensors`
files that hold none computes them once, from the aligned crops their run saved, and stores them in those files
(kept in memory when the folder cannot be written)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import torch

from ..inversion import restyle_e4e_invert
from ..io.folders import LATENT_SUFFIX, InputFile, printable
from ..io.formats import LEGACY_VERSION_KEY, TAG_KEY, VERSION_KEY, read_safetensors_header, read_safetensors_metadata
from ..io.images import ImageReadError, pil_to_input, read_rgb
from ..io.latents import load_latent_file, save_latent
from ..io.run_folder import MANIFEST_NAME, read_manifest
from .manifest import output_lock
from .models import RESTYLE_DOWNLOAD, RunModels
from .options import RunOptions
from .state import file_stat_identity
from .steps import RESTYLE_STEPS

__all__ = ["latents_without_restyle", "no_restyle_message", "complete_restyle_latents"]

log = logging.getLogger(__name__)


def latents_without_restyle(items: Sequence[InputFile], options: RunOptions) -> list[InputFile]:
    """Saved-latent inputs that a restyle transfer needs a ReStyle latent for and that hold none (header only;
    unreadable files are left to their own records)."""
    if not ("transfers" in options.products and options.transfers and options.transfer_latent == "restyle"):
        return []
    lacking = []
    for item in items:
        if not item.is_latent:
            continue
        try:
            header = read_safetensors_header(item.path)
        except (ValueError, OSError):
            continue
        if "restyle_latent" not in header:
            lacking.append(item)
    return lacking


def no_restyle_message(lacking: list[InputFile], total: int, options: RunOptions) -> str:
    names = ", ".join(printable(item.path.name) for item in lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    restyle = Path(options.restyle) if options.restyle else Path(options.models) / f"{RESTYLE_DOWNLOAD}.safetensors"
    return (f"{len(lacking)} of the {total} saved latents ({names}) hold no ReStyle-e4e latent (`run` stores one "
            f"only with --transfer), and the ReStyle-e4e encoder {restyle} that would compute them from the aligned "
            f"crops does not exist. Download it with `hyperstyle download {RESTYLE_DOWNLOAD}`, or pass "
            f"--transfer-latent w to render the W-encoder latents instead.")



def complete_restyle_latents(lacking: Sequence[InputFile], options: RunOptions, models: RunModels,
                             batch_size: int) -> dict[Path, torch.Tensor]:
    """Compute, once, the ReStyle-e4e latents that saved-latent inputs lack, from the aligned crops their run
    saved, and store them in those latent files. Returns latent path -> [1, n_styles, 512] (also when storing
    failed: the run then uses them from memory)."""
    computed: dict[Path, torch.Tensor] = {}
    crops = [(item, crop) for item in lacking if (crop := _restyle_crop(item)) is not None]
    if not crops:
        return computed
    restyle = models.need(restyle=True).restyle
    spec = restyle.input_spec
    for start in range(0, len(crops), batch_size):
        part, xs = [], []
        for item, crop in crops[start:start + batch_size]:
            try:
                xs.append(pil_to_input(read_rgb(crop, options.max_pixels)[0], spec.height, spec.width))
            except (ImageReadError, OSError):   # unreadable crop: that latent's record says what is missing
                continue
            part.append(item)
        if not part:
            continue
        latents = restyle_e4e_invert(torch.cat(xs), restyle, RESTYLE_STEPS).latent.float().cpu()
        for item, row in zip(part, latents):
            computed[item.path] = row[None]
    _store_restyle_latents(computed)
    log.info("computed the ReStyle-e4e latents of %d saved latent(s)", len(computed))
    return computed


def _restyle_crop(item: InputFile) -> Path | None:
    """The crop a saved latent was inverted from: its run's `<out>_aligned.png`, else (a --no-align run) the
    photo its run recorded, if unchanged."""
    stem = item.path.name[:-len(LATENT_SUFFIX)]
    aligned = item.path.parent / f"{stem}_aligned.png"
    if aligned.is_file():
        return aligned
    folder = item.path.parent
    record = next((r for r in read_manifest(folder / MANIFEST_NAME).values()
                   if r.get("status") == "ok" and r.get("out") == stem and r.get("align") is False), None)
    source = record.get("source") if record else None
    if isinstance(source, str):
        st = file_stat_identity(Path(source))
        if st is not None and st == [record.get("size"), record.get("mtime_ns")]:
            return Path(source)
    return None


def _store_restyle_latents(latents: dict[Path, torch.Tensor]) -> None:
    by_folder: dict[Path, list[Path]] = {}
    for path in latents:
        by_folder.setdefault(path.parent, []).append(path)
    for folder, paths in by_folder.items():
        try:
            with output_lock(folder):
                for path in paths:
                    _add_restyle_latent(path, latents[path])
        except (OSError, ValueError) as e:     # read-only, or another run is writing there
            log.warning("could not store the ReStyle-e4e latents in %s (%s); they are used for this run only",
                        printable(str(folder)), printable(str(e)))


def _add_restyle_latent(path: Path, restyle_latent: torch.Tensor) -> None:
    """Rewrite a saved latent file with its ReStyle-e4e latent added (metadata and other tensors kept)."""
    tensors = load_latent_file(path)
    metadata = {k: v for k, v in read_safetensors_metadata(path).items()
                if k not in (TAG_KEY, VERSION_KEY, LEGACY_VERSION_KEY)}
    extra = {k: v for k, v in tensors.items() if k != "latent"}
    extra["restyle_latent"] = restyle_latent
    save_latent(path, tensors["latent"], extra, metadata)
