"""The per-file steps of a folder run: read and align a photo (or reuse its saved crop), read a saved latent (an
input, or the latent and deltas an earlier run saved for a photo), run the models on a batch, write the outputs.
`run.runner` decides what each file needs and records the results. NaN or infinite values, read or made by the
models, make that file an error (nothing of it is written)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..deltas import TOONIFY_LAYERS, WeightDeltas
from ..editing.directions import apply_direction
from ..face.alignment import align_face, detect_faces     # dlib itself is imported on first use (optional)
from ..face.info import AlignmentInfo
from ..face.paste_back import paste_back
from ..inversion import generate, invert, restyle_e4e_invert
from ..io.files import atomic_path
from ..io.folders import IMAGE_SUFFIXES, LATENT_SUFFIX
from ..io.images import MIN_IMAGE_SIDE, ImageReadError, pil_to_input, read_rgb, tensor_to_pil, to_unit_range
from ..io.latents import load_latent_file, save_latent
from .manifest import record_key
from .models import RunModels
from ..io.run_folder import is_plain_name
from .naming import output_kinds
from .options import SKIP_CODES, RunOptions, edit_labels
from .state import wants_restyle_latent
from .work import RenderedBatch, Status, WorkItem

__all__ = ["WorkItem", "RenderedBatch", "Skip", "read_image", "read_latent", "read_saved", "render", "write_outputs",
           "DELTAS_TORCH_DTYPES", "RESTYLE_STEPS"]

DELTAS_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
RESTYLE_STEPS = 2       # ReStyle-e4e steps of the official domain adaptation


class Skip(Exception):
    """A file that is not processed: its manifest `status` ("skipped" or "error"), `code` and `reason`."""

    def __init__(self, status: Status, code: str, reason: str):
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


class CannotReuse(Exception):
    """The saved files of an earlier run cannot be used for this item; it is processed from the photo instead."""


# ------------------------------------------------------------------ stage 1: read, check, align


def _read_picture(path: Path, opts: RunOptions) -> tuple[Image.Image, list[str]]:
    """The upright RGB picture of an input (with what was converted); raises Skip."""
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise Skip("skipped", "not_an_image_type",
                   f"{path.name} is not an image type ({path.suffix or 'no extension'}); "
                   f"handled: {' '.join(IMAGE_SUFFIXES)}")
    try:
        picture, notes = read_rgb(path, opts.max_pixels)
    except FileNotFoundError as e:
        raise Skip("error", "missing", str(e)) from None
    except ImageReadError as e:
        raise Skip("skipped" if e.code in SKIP_CODES else "error", e.code, str(e)) from None
    w, h = picture.size
    if min(w, h) < MIN_IMAGE_SIDE:
        raise Skip("skipped", "too_small", f"{path.name} is {w}x{h} pixels; faces need at least "
                                           f"{MIN_IMAGE_SIDE}x{MIN_IMAGE_SIDE}. Use a larger photo")
    return picture, notes


def _read_saved_alignment(item: WorkItem, output: Path) -> bool:
    """The crop and record an earlier run wrote for this photo under the same alignment settings; False when
    they cannot be read (then the photo is aligned again)."""
    try:
        with Image.open(output / f"{item.out}_aligned.png") as im:
            crop = im.convert("RGB")
        info = AlignmentInfo.from_dict(json.loads((output / f"{item.out}_alignment.json").read_text("utf-8")))
    except (OSError, ValueError):      # deleted or damaged since: align again
        return False
    item.aligned, item.info = crop, info
    return True


def read_image(item: WorkItem, opts: RunOptions, models: RunModels | None, output: Path | None = None) -> None:
    """Read the photo, check it, align it (with `opts.align`; or reuse the saved crop when `item.reuse_alignment`)
    and make the model input; raises Skip. The photo is kept only when something is pasted back."""
    path = item.file.path
    t = time.perf_counter()
    if item.reuse_alignment and output is not None and _read_saved_alignment(item, output):
        if item.wants_paste:
            picture, notes = _read_picture(path, opts)
            item.notes += notes
            item.photo = np.asarray(picture, dtype=np.uint8)
        item.timings["read"] = time.perf_counter() - t
    else:
        picture, notes = _read_picture(path, opts)
        item.notes += notes
        item.timings["read"] = time.perf_counter() - t
        if opts.align:
            t = time.perf_counter()
            photo = np.asarray(picture, dtype=np.uint8)
            # detect_faces + align_face (as align_image(..., "largest", "skip")): a photo without a face is
            # reported once, by its record, not also by the alignment module's log.
            faces = detect_faces(photo, path.name)
            item.timings["align"] = time.perf_counter() - t
            if not faces:
                raise Skip("skipped", "no_face", f"No face found in {path.name}. Crop closer to the face, or pass "
                                                 f"--no-align if it is already an aligned crop")
            crop, item.info = align_face(photo, faces[0], opts.align_size, opts.align_size, name=path.name)
            item.timings["align"] = time.perf_counter() - t
            item.aligned = Image.fromarray(crop)
            if item.wants_paste:
                item.photo = photo
        else:
            item.aligned = picture
    model = models and (models.hs or models.restyle)
    if model is not None:
        spec = model.input_spec
        item.x = pil_to_input(item.aligned, spec.height, spec.width)


def _as_float32_deltas(deltas: WeightDeltas) -> WeightDeltas:
    """Deltas stored as float16 / bfloat16 (`--save-deltas`) are rendered in float32, as the models run."""
    return deltas if all(t.dtype == torch.float32 for t in deltas.values()) else deltas.to(dtype=torch.float32)


def read_saved(item: WorkItem, opts: RunOptions, output: Path) -> None:
    """A photo whose inversion is still valid: read the latent and deltas its earlier run saved in `output`.
    Raises CannotReuse when they cannot be read (the photo is then inverted again)."""
    latent_path, deltas_path = output / f"{item.out}{LATENT_SUFFIX}", output / f"{item.out}_deltas.safetensors"
    try:
        tensors = load_latent_file(latent_path)
        deltas = WeightDeltas.load(deltas_path)
    except (ValueError, OSError) as e:
        raise CannotReuse(str(e)) from None
    stored = {t.dtype for t in deltas.values()}
    if item.wants("deltas") and stored - {torch.float32, DELTAS_TORCH_DTYPES[opts.stored_deltas_dtype]}:
        raise CannotReuse("the saved deltas are rounded; exact ones need the inversion again")
    item.latent = tensors["latent"]
    item.restyle_latent = tensors.get("restyle_latent")
    item.deltas = _as_float32_deltas(deltas)


def read_latent(item: WorkItem, opts: RunOptions, restyle_latents: dict[Path, torch.Tensor] | None = None) -> None:
    """Read a `*_latent.safetensors` input and the `_deltas` file beside it (and, to paste back, the photo and
    alignment record of its run); raises Skip. `restyle_latents` holds ReStyle latents computed for inputs that
    had none (`run.runner`)."""
    path = item.file.path
    try:
        tensors = load_latent_file(path)
    except (ValueError, FileNotFoundError) as e:
        raise Skip("error", "bad_latent", str(e)) from None
    _refuse_non_finite(path.name, "input", {name: t for name, t in tensors.items()
                                            if name in ("latent", "restyle_latent")})
    item.latent = tensors["latent"]
    item.restyle_latent = tensors.get("restyle_latent")
    if item.restyle_latent is None and restyle_latents and path in restyle_latents:
        item.restyle_latent = restyle_latents[path]
    deltas_path = path.with_name(path.name[:-len(LATENT_SUFFIX)] + "_deltas.safetensors")
    if not deltas_path.exists():
        raise Skip("error", "missing_deltas", f"{deltas_path.name} (the weight deltas of {path.name}) is missing; "
                                              f"keep the _deltas file beside the _latent file")
    try:
        deltas = WeightDeltas.load(deltas_path)
    except (ValueError, FileNotFoundError) as e:
        raise Skip("error", "bad_latent", str(e)) from None
    _refuse_non_finite(path.name, "input", {deltas_path.name: list(deltas.values())})
    item.deltas = _as_float32_deltas(deltas)
    if item.deltas.batch_size != item.latent.shape[0]:
        raise Skip("error", "bad_latent", f"{path.name} holds {item.latent.shape[0]} latents but its deltas "
                                          f"{item.deltas.batch_size}")
    if item.wants("transfer") and item.restyle_latent is None and opts.transfer_latent == "restyle":
        stem = path.name[:-len(LATENT_SUFFIX)]
        raise Skip("error", "no_restyle_latent",
                   f"{path.name} has no ReStyle-e4e latent and there is no {stem}_aligned.png beside it to compute "
                   f"one from; pass --transfer-latent w to use its W-encoder latent instead")
    if item.wants_paste:
        _read_paste_source(item, opts)


def _read_paste_source(item: WorkItem, opts: RunOptions) -> None:
    """The photo and alignment record a saved latent's run recorded, for paste-back; raises Skip."""
    try:
        item.info = AlignmentInfo.from_dict(json.loads(item.alignment_file.read_text("utf-8")))
    except (OSError, ValueError) as e:
        raise Skip("error", "bad_alignment", f"{item.alignment_file.name} cannot be read for paste-back ({e}); "
                                             f"pass --no-paste, or align the photo again") from None
    picture, notes = _read_picture(item.paste_source, opts)
    item.photo = np.asarray(picture, dtype=np.uint8)


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


def needs_restyle(item: WorkItem, opts: RunOptions) -> bool:
    """Whether rendering `item` needs its ReStyle-e4e latent: restyle transfers, or a photo's latent file."""
    transfers = item.wants("transfer") and opts.transfer_latent == "restyle"
    latent_file = item.wants("latent") and wants_restyle_latent(opts) and not item.file.is_latent
    return transfers or latent_file


def _restyle_latents(batch: list[WorkItem], opts: RunOptions, models: RunModels) -> torch.Tensor | None:
    """The ReStyle latents of the batch [B, n, 512]: as read, else computed from the crops that need them."""
    missing = [it for it in batch if it.restyle_latent is None and it.x is not None and needs_restyle(it, opts)]
    if missing:
        computed = restyle_e4e_invert(torch.cat([it.x for it in missing]), models.restyle, RESTYLE_STEPS).latent
        for row, it in zip(computed.float().cpu(), missing):
            it.restyle_latent = row[None]
    if all(it.restyle_latent is not None for it in batch):
        return torch.cat([it.restyle_latent for it in batch])
    return None


def render(batch: list[WorkItem], opts: RunOptions, models: RunModels | None) -> RenderedBatch:
    """Model work for a batch: its inversions, latents, deltas, edits and transfers (on the CPU).

    Items of one batch share their mode: "invert" runs the models on the crops, "saved" starts from the latents
    and deltas read. Only edits and transfers some item of the batch writes now are rendered.
    """
    out = RenderedBatch()
    if models is None:      # align only
        return out
    t = time.perf_counter()
    if batch[0].mode == "saved":
        latent = torch.cat([it.latent for it in batch])
        deltas = WeightDeltas.cat([it.deltas for it in batch])
        restyle = _restyle_latents(batch, opts, models) if models.restyle is not None else (
            torch.cat([it.restyle_latent for it in batch]) if all(it.restyle_latent is not None for it in batch)
            else None)
    else:
        x = torch.cat([it.x for it in batch])
        result = invert(x, models.hs, models.we, opts.iterations, fast=opts.fast)
        latent, deltas = result.latent, result.deltas
        out.final = result.final.float().cpu()
        del result
        restyle = None
        if models.restyle is not None and any(needs_restyle(it, opts) for it in batch):
            restyle = restyle_e4e_invert(x, models.restyle, RESTYLE_STEPS).latent
    out.latent, out.deltas = latent.float().cpu(), deltas.to("cpu", None)
    out.restyle_latent = None if restyle is None else restyle.float().cpu()
    edits = [(label, e) for label, e in zip(edit_labels(opts.edits), opts.edits)
             if "edits" in opts.products and any(it.wants("edit", label) or it.wants("edit_pasted", label)
                                                  for it in batch)]
    if edits:
        out.edits = {label: generate(models.hs.generator, apply_direction(latent, models.directions[e.name],
                                                                             e.factor), deltas).float().cpu()
                        for label, e in edits}
    transfers = {label: gen for label, gen in models.transfers.items()
                 if "transfers" in opts.products and any(it.wants("transfer", label) for it in batch)}
    if transfers:
        codes = restyle if (opts.transfer_latent == "restyle" and restyle is not None) else latent
        if opts.transfer_latent == "restyle" and restyle is None:
            raise RuntimeError("the ReStyle-e4e latents of this batch are missing")     # read_latent refuses first
        kept = deltas.select(TOONIFY_LAYERS)
        out.transfers = {label: generate(gen, codes, kept).float().cpu() for label, gen in transfers.items()}
    share = (time.perf_counter() - t) / len(batch)
    for item in batch:
        item.timings["model"] = share
    return out


def write_outputs(item: WorkItem, i: int, rendered: RenderedBatch, opts: RunOptions, output: Path) -> list[str]:
    """Write the outputs of `item` that are to be written now (`item.todo`; row `i` of the batch's `rendered`)
    into `output`, each atomically; returns the names written. Raises Skip (before writing anything) when its row
    holds NaN or infinite values."""
    out = item.out
    kinds = item.kinds or output_kinds(out, opts, item.file.is_latent)
    wanted = [name for name in kinds if item.todo is None or name in item.todo]
    if not all(is_plain_name(n) for n in wanted):   # naming guarantees it; outputs never leave `output`
        raise RuntimeError(f"output names {wanted} are not plain file names")
    _refuse_non_finite(item.file.path.name, "output", rendered.row(i))
    source = {"source_image": record_key(item.file.key)}
    written: list[str] = []

    def save_png(name: str, image) -> None:
        with atomic_path(output / name) as tmp:
            image.save(tmp, format="PNG")
        written.append(name)

    def save_face(name: str, face) -> None:
        save_png(name, tensor_to_pil(face))

    def save_pasted(name: str, face) -> None:
        if item.photo is None or item.info is None:
            raise RuntimeError(f"{name}: the photo to paste into was not read")
        arr = to_unit_range(face).permute(1, 2, 0).numpy()
        composite = paste_back(item.photo, arr, item.info)
        save_png(name, Image.fromarray(np.rint(composite * 255).astype(np.uint8)))

    for name in wanted:
        kind, label = kinds[name]
        if kind == "aligned":
            save_png(name, item.aligned)
        elif kind == "alignment":
            with atomic_path(output / name) as tmp:
                tmp.write_text(json.dumps({**source, **item.info.to_dict()}) + "\n")
            written.append(name)
        elif kind == "inversion":
            save_face(name, rendered.final[i])
        elif kind == "pasted":
            save_pasted(name, rendered.final[i])
        elif kind == "edit":
            save_face(name, rendered.edits[label][i])
        elif kind == "edit_pasted":
            save_pasted(name, rendered.edits[label][i])
        elif kind == "transfer":
            save_png(name, tensor_to_pil(rendered.transfers[label][i]))
        elif kind == "latent":
            extra = {}
            if wants_restyle_latent(opts):
                if rendered.restyle_latent is None:
                    raise RuntimeError(f"{name}: the ReStyle-e4e latent was not computed")
                extra["restyle_latent"] = rendered.restyle_latent[i:i + 1]
            save_latent(output / name, rendered.latent[i:i + 1], extra, source)
            written.append(name)
        elif kind == "deltas":
            storage = DELTAS_TORCH_DTYPES[opts.stored_deltas_dtype]
            rendered.deltas.index(i).save(output / name, source, dtype=storage)
            written.append(name)
    missing = [n for n in wanted if n not in written]
    if missing:     # would make the file look unfinished forever; cannot happen unless the code above is wrong
        raise RuntimeError(f"outputs {missing} were not written")
    return written
