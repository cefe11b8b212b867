"""The per-file steps of a folder run: read and align a photo (or read a saved latent), run the models on a batch,
write the outputs. `run.runner` strings them together and records the results. NaN or infinite values, read or
made by the models, make that file an error (nothing of it is written)."""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..deltas import TOONIFY_LAYERS, WeightDeltas
from ..editing.directions import apply_direction
from ..face.alignment import align_image     # dlib itself is imported on the first alignment (optional until then)
from ..face.paste_back import paste_back
from ..inversion import generate, invert, restyle_e4e_invert
from ..io.files import atomic_path
from ..io.folders import IMAGE_SUFFIXES, LATENT_SUFFIX, InputFile
from ..io.images import MIN_IMAGE_SIDE, ImageReadError, pil_to_input, read_rgb, tensor_to_pil, to_unit_range
from ..io.latents import load_latent_file, save_latent
from .manifest import record_key
from .models import RunModels
from .naming import is_plain_name, output_names
from .options import SKIP_CODES, RunOptions, edit_labels

__all__ = ["WorkItem", "Skip", "read_image", "read_latent", "render", "write_outputs"]


@dataclass
class WorkItem:
    """One input on its way through a batch."""
    file: InputFile
    out: str
    stat: os.stat_result | None
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    photo: np.ndarray | None = None       # the upright RGB photo [H, W, 3] uint8 (kept only for paste-back)
    aligned: object = None                # PIL crop (align) or the picture itself
    info: object = None                   # AlignmentInfo
    x: object = None                      # [1, 3, h, w] model input
    latent: object = None                 # latent inputs: [1, n, 512]
    restyle_latent: object = None
    deltas: object = None


class Skip(Exception):
    """A file that is not processed: its manifest `status` ("skipped" or "error"), `code` and `reason`."""

    def __init__(self, status: str, code: str, reason: str):
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


# ------------------------------------------------------------------ stage 1: read, check, align


def read_image(item: WorkItem, opts: RunOptions, models: RunModels | None) -> None:
    """Read the photo, check it, align it (with `opts.align`) and make the model input; raises Skip."""
    path = item.file.path
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise Skip("skipped", "not_an_image_type",
                   f"{path.name} is not an image type ({path.suffix or 'no extension'}); "
                   f"handled: {' '.join(IMAGE_SUFFIXES)}")
    t = time.perf_counter()
    try:
        picture, notes = read_rgb(path, opts.max_pixels)
    except FileNotFoundError as e:
        raise Skip("error", "missing", str(e)) from None
    except ImageReadError as e:
        raise Skip("skipped" if e.code in SKIP_CODES else "error", e.code, str(e)) from None
    item.notes += notes
    w, h = picture.size
    if min(w, h) < MIN_IMAGE_SIDE:
        raise Skip("skipped", "too_small", f"{path.name} is {w}x{h} pixels; faces need at least "
                                           f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}. Use a larger photo")
    item.timings["read"] = time.perf_counter() - t
    if opts.align:
        t = time.perf_counter()
        photo = np.asarray(picture, dtype=np.uint8)
        faces = align_image(photo, opts.align_size, "largest", "skip", path.name, transform_size=opts.align_size)
        item.timings["align"] = time.perf_counter() - t
        if not faces:
            raise Skip("skipped", "no_face", f"No face found in {path.name}. Crop closer to the face, or pass "
                                             f"--no-align if it is already an aligned crop")
        crop, item.info = faces[0]
        item.aligned = Image.fromarray(crop)
        if opts.paste and "pasted" in opts.products:
            item.photo = photo
    else:
        item.aligned = picture
    if models is not None and models.hs is not None:
        spec = models.hs.input_spec
        item.x = pil_to_input(item.aligned, spec.height, spec.width)


def read_latent(item: WorkItem, opts: RunOptions) -> None:
    """Read a `*_latent.safetensors` input and the `_deltas` file beside it; raises Skip."""
    path = item.file.path
    try:
        tensors = load_latent_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise Skip("error", "bad_latent", str(e)) from None
    _refuse_non_finite(path.name, "input", {name: t for name, t in tensors.items()
                                            if name in ("latent", "restyle_latent")})
    item.latent = tensors["latent"]
    if "restyle_latent" in tensors:
        item.restyle_latent = tensors["restyle_latent"]
    deltas_path = path.with_name(path.name[:-len(LATENT_SUFFIX)] + "_deltas.safetensors")
    if not deltas_path.exists():
        raise Skip("error", "missing_deltas", f"{deltas_path.name} (the weight deltas of {path.name}) is missing; "
                                              f"keep the _deltas file beside the _latent file")
    try:
        item.deltas = WeightDeltas.load(deltas_path)
    except (ValueError, FileNotFoundError) as e:
        raise Skip("error", "bad_latent", str(e)) from None
    _refuse_non_finite(path.name, "input", {deltas_path.name: list(item.deltas.values())})
    if item.deltas.batch_size != item.latent.shape[0]:
        raise Skip("error", "bad_latent", f"{path.name} holds {item.latent.shape[0]} latents but its deltas "
                                          f"{item.deltas.batch_size}")
    if "transfers" in opts.products and opts.transfers and item.restyle_latent is None \
            and opts.transfer_latent == "restyle":
        raise Skip("error", "no_restyle_latent",
                   f"{path.name} has no ReStyle-e4e latent (it is written by `run --transfer`); pass "
                   f"--transfer-latent w to use its W-encoder latent instead")


def _refuse_non_finite(name: str, what: str, tensors: dict[str, torch.Tensor | list[torch.Tensor]]) -> None:
    """Skip("error", "non_finite[_output]") naming the tensors (or groups of them) of `name` that hold NaN or
    infinite values; `what` is "input" or "output"."""
    def finite(t: torch.Tensor) -> bool:
        return not t.is_floating_point() or bool(torch.isfinite(t).all())
    bad = [key for key, ts in tensors.items() if not all(finite(t) for t in (ts if isinstance(ts, list) else [ts]))]
    if not bad:
        return
    if what == "input":
        raise Skip("error", "non_finite", f"{name} holds NaN or infinite values ({', '.join(bad)}); it cannot be "
                                          f"rendered. Write it again from the photo")
    raise Skip("error", "non_finite_output",
               f"the models produced NaN or infinite values for {name} ({', '.join(bad)}); nothing was written. "
               f"With --dtype float16 or bfloat16, run it again in float32")


# ------------------------------------------------------------------ stage 2: models, then write


def render(batch: list[WorkItem], opts: RunOptions, models: RunModels | None) -> dict:
    """Model work for a batch -> {"final", "latent", "restyle_latent", "deltas", "edits", "transfers"} (CPU)."""
    out: dict = {}
    if models is None:      # align only
        return out
    t = time.perf_counter()
    if batch[0].file.is_latent:
        latent = torch.cat([it.latent for it in batch])
        deltas = WeightDeltas.cat([it.deltas for it in batch])
        restyle = (torch.cat([it.restyle_latent for it in batch])
                   if all(it.restyle_latent is not None for it in batch) else None)
    else:
        x = torch.cat([it.x for it in batch])
        result = invert(x, models.hs, models.we, opts.iterations)
        latent, deltas = result.latent, result.deltas
        out["final"] = result.final.float().cpu()
        del result
        restyle = None
        if models.restyle is not None:
            restyle = restyle_e4e_invert(x, models.restyle, 2).latent
    out["latent"], out["deltas"] = latent.float().cpu(), deltas.to("cpu", None)
    out["restyle_latent"] = None if restyle is None else restyle.float().cpu()
    if "edits" in opts.products and opts.edits:
        out["edits"] = {label: generate(models.hs.generator, apply_direction(latent, models.directions[e.name],
                                                                             e.factor), deltas).float().cpu()
                        for label, e in zip(edit_labels(opts.edits), opts.edits)}
    if "transfers" in opts.products and opts.transfers:
        codes = restyle if (opts.transfer_latent == "restyle" and restyle is not None) else latent
        kept = deltas.select(TOONIFY_LAYERS)
        out["transfers"] = {label: generate(gen, codes, kept).float().cpu()
                            for label, gen in models.transfers.items()}
    share = (time.perf_counter() - t) / len(batch)
    for item in batch:
        item.timings["model"] = share
    return out


def _row_tensors(rendered: dict, i: int) -> dict[str, torch.Tensor | list[torch.Tensor]]:
    """Row `i` of every tensor in `rendered` (images, latents, deltas), named for messages."""
    rows = {}
    for key in ("final", "latent", "restyle_latent"):
        if rendered.get(key) is not None:
            rows["inversion" if key == "final" else key] = rendered[key][i]
    for group in ("edits", "transfers"):
        rows.update({label: images[i] for label, images in rendered.get(group, {}).items()})
    if rendered.get("deltas") is not None:
        rows["deltas"] = [t[i] for t in rendered["deltas"].values()]
    return rows


def write_outputs(item: WorkItem, i: int, rendered: dict, opts: RunOptions, output: Path) -> list[str]:
    """Write every output of `item` (row `i` of the batch's `rendered`) into `output`, each atomically; returns
    the names written. Raises Skip (before writing anything) when its row holds NaN or infinite values."""
    out, p = item.out, opts.products
    expected = output_names(out, opts, item.file.is_latent)
    if not all(is_plain_name(n) for n in expected):   # naming guarantees it; outputs never leave `output`
        raise RuntimeError(f"output names {expected} are not plain file names")
    _refuse_non_finite(item.file.path.name, "output", _row_tensors(rendered, i))
    source = {"source_image": record_key(item.file.key)}
    written: list[str] = []

    def save_png(name: str, image) -> None:
        with atomic_path(output / name) as tmp:
            image.save(tmp, format="PNG")
        written.append(name)

    def save_face(base: str, face, pasted_name: str) -> None:
        save_png(f"{base}.png", tensor_to_pil(face))
        if item.photo is not None and item.info is not None:
            arr = to_unit_range(face).permute(1, 2, 0).numpy()
            composite = paste_back(item.photo, arr, item.info)
            save_png(pasted_name, Image.fromarray(np.rint(composite * 255).astype(np.uint8)))

    latent_input = item.file.is_latent
    if not latent_input and opts.align and "aligned" in p:
        save_png(f"{out}_aligned.png", item.aligned)
    if not latent_input and opts.align and "alignment" in p:
        with atomic_path(output / f"{out}_alignment.json") as tmp:
            tmp.write_text(json.dumps({**source, **item.info.to_dict()}) + "\n")
        written.append(f"{out}_alignment.json")
    if "inversion" in p and "final" in rendered:
        save_face(f"{out}_inversion", rendered["final"][i], f"{out}_pasted.png")
    for label, images in rendered.get("edits", {}).items():
        save_face(f"{out}_{label}", images[i], f"{out}_{label}_pasted.png")
    for label, images in rendered.get("transfers", {}).items():
        save_png(f"{out}_{label}.png", tensor_to_pil(images[i]))
    if not latent_input and "latent" in p:
        extra = {}
        if rendered.get("restyle_latent") is not None:
            extra["restyle_latent"] = rendered["restyle_latent"][i:i + 1]
        save_latent(output / f"{out}{LATENT_SUFFIX}", rendered["latent"][i:i + 1], extra, source)
        written.append(f"{out}{LATENT_SUFFIX}")
    if not latent_input and "deltas" in p:
        rendered["deltas"].index(i).save(output / f"{out}_deltas.safetensors", source)
        written.append(f"{out}_deltas.safetensors")
    missing = [n for n in expected if n not in written]
    if missing:     # would make the file look unfinished forever; cannot happen unless the code above is wrong
        raise RuntimeError(f"outputs {missing} were not written")
    return written
