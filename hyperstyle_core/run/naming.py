"""Output file names of a folder run: what each input writes, and distinct `<out>` stems for clashing inputs.

Output names: `<out>_aligned.png`, `<out>_alignment.json`, `<out>_inversion.png`, `<out>_pasted.png`,
`<out>_<edit>.png`, `<out>_<edit>_pasted.png`, `<out>_<transfer>.png`, `<out>_latent.safetensors`,
`<out>_deltas.safetensors`, where `<out>` is the input's stem. Inputs whose stems clash (a.jpg and a.png, or
A.jpg and a.jpg on a case-insensitive disk) are all named `<stem>_<extension>` (a_jpg, a_png), then a counter;
a name recorded by an earlier run is kept if it is a plain name (`is_plain_name`: the manifest is data, and a
recorded `../x` or `/x` must not move outputs out of the output folder). Undecodable bytes of an input name
become `_xNN` in its outputs' names (bad\\xff.png -> bad_xff_inversion.png), so every output name is valid text.
The stem rule itself (`unique_stems`, `named_png_files`) and `is_plain_name` belong to the folder format
(io.run_folder), which readers of a run's folder share.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ..io.folders import LATENT_SUFFIX, InputFile
from ..io.run_folder import clashing_stems, is_plain_name, name_candidates, named_png_files, text_stem, unique_stems
from .options import RunOptions, edit_labels, transfer_label

__all__ = ["output_names", "output_kinds", "transfer_label", "assign_output_stems", "unique_stems", "named_png_files",
           "is_plain_name"]


def output_kinds(out: str, options: RunOptions, latent_input: bool = False,
                 pasted: bool | None = None) -> dict[str, tuple[str, str | None]]:
    """Every file `run_folder` writes for an input named `out` under `options`, in writing order, each with its
    (kind, label): kinds aligned, alignment, inversion, pasted, edit, edit_pasted, transfer, latent, deltas; the
    label names the edit or transfer (None otherwise).

    `pasted` says whether a saved-latent input can be pasted back (its run recorded the alignment and the photo is
    still there); photos are pasted back when aligned. None: False for saved latents.
    """
    p = options.products
    if pasted is None or not latent_input:
        pasted = not latent_input
    names: dict[str, tuple[str, str | None]] = {}
    face_outputs: list[tuple[str, str, str | None]] = []     # (base name, kind, label): these get a pasted version
    if not latent_input:
        if options.align and "aligned" in p:
            names[f"{out}_aligned.png"] = ("aligned", None)
        if options.align and "alignment" in p:
            names[f"{out}_alignment.json"] = ("alignment", None)
        if "inversion" in p:
            face_outputs.append((f"{out}_inversion", "inversion", None))
    if "edits" in p:
        face_outputs += [(f"{out}_{label}", "edit", label) for label in edit_labels(options.edits)]
    for base, kind, label in face_outputs:
        names[f"{base}.png"] = (kind, label)
    if options.align and options.paste and "pasted" in p and pasted:
        for base, kind, label in face_outputs:
            if kind == "inversion":
                names[f"{out}_pasted.png"] = ("pasted", None)
            else:
                names[f"{base}_pasted.png"] = ("edit_pasted", label)
    if "transfers" in p:
        for t in options.transfers:
            names[f"{out}_{transfer_label(t)}.png"] = ("transfer", transfer_label(t))
    if not latent_input:
        if "latent" in p:
            names[f"{out}{LATENT_SUFFIX}"] = ("latent", None)
        if "deltas" in p:
            names[f"{out}_deltas.safetensors"] = ("deltas", None)
    return names


def output_names(out: str, options: RunOptions, latent_input: bool = False, pasted: bool | None = None) -> list[str]:
    """Every file `run_folder` writes for an input named `out` under `options` (see `output_kinds`)."""
    return list(output_kinds(out, options, latent_input, pasted))


def _stem_of(item: InputFile) -> str:
    name = item.path.name
    return text_stem(name[:-len(LATENT_SUFFIX)] if item.is_latent else Path(name).stem)


def assign_output_stems(items: Sequence[InputFile], options: RunOptions,
                        previous: dict[str, str] | None = None) -> dict[str, str]:
    """Deterministic `<out>` name per input key, such that no two inputs write the same file.

    Unique stems are kept; clashing stems (a.jpg / a.png, case-insensitively) become `<stem>_<ext>`, then get a
    counter. Names in `previous` (key -> out from the manifest) are claimed first so re-runs keep their names;
    recorded names that are not plain names (`is_plain_name`) are ignored.
    """
    previous = previous or {}
    claimed: set[str] = set()
    result: dict[str, str] = {}

    def names(item: InputFile, out: str) -> set[str]:
        # Saved latents may be pasted back (when their run's records allow): claim those names too.
        return {n.lower() for n in output_names(out, options, item.is_latent, pasted=True)}

    def fits(item: InputFile, out: str) -> bool:
        return not names(item, out) & claimed

    def claim(item: InputFile, out: str) -> None:
        claimed.update(names(item, out))
        result[item.key] = out

    clashing = clashing_stems([_stem_of(item) for item in items])
    for item in items:
        out = previous.get(item.key)
        if is_plain_name(out) and fits(item, out):
            claim(item, out)
    for item in items:
        if item.key not in result:
            ext = "latent" if item.is_latent else item.path.suffix
            claim(item, next(c for c in name_candidates(_stem_of(item), ext, clashing) if fits(item, c)))
    return result
