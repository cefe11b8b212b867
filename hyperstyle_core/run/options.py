"""What a folder run does: `RunOptions`, the edits it applies (`parse_edits`) and the run's fixed names."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..io.folders import LATENT_SUFFIX
from ..io.images import DEFAULT_MAX_PIXELS, MIN_IMAGE_SIDE
from ..io.run_folder import LOCK_NAME, MANIFEST_NAME, SUMMARY_NAME

__all__ = ["Edit", "parse_edits", "edit_labels", "transfer_label", "RunOptions", "PRODUCTS", "RESERVED_LABELS",
           "SKIP_CODES", "LATENT_SUFFIX", "MANIFEST_NAME", "SUMMARY_NAME", "LOCK_NAME", "DEFAULT_MAX_PIXELS",
           "MIN_SIDE", "DELTAS_DTYPES"]

MIN_SIDE = MIN_IMAGE_SIDE     # release-0.1 name, still reached as hyperstyle_core.batch.MIN_SIDE
PRODUCTS = ("aligned", "alignment", "inversion", "pasted", "edits", "transfers", "latent", "deltas")
RESERVED_LABELS = {"aligned", "alignment", "inversion", "pasted", "latent", "deltas"}
DELTAS_DTYPES = ("float32", "float16", "bfloat16")     # storage of _deltas.safetensors; float32 is exact
SKIP_CODES = {"not_an_image_type", "no_face", "too_small", "too_large"}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class Edit:
    """An InterFaceGAN edit: direction `name` (a file in the models folder) times `factor`."""
    name: str
    factor: float


def parse_edits(specs: str | Iterable[str] | None) -> tuple[Edit, ...]:
    """"age=+3,smile=-1" (or several such strings) -> (Edit('age', 3.0), Edit('smile', -1.0))."""
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    edits = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                factor = float(value)
            except ValueError:
                factor = None
            if not sep or not _LABEL.match(name) or factor is None or not np.isfinite(factor):
                raise ValueError(f"cannot read the edit {part!r}: write NAME=FACTOR, e.g. age=+3 or smile=-1.5, "
                                 f"several separated by commas (NAME is a direction file in the models folder)")
            edits.append(Edit(name, factor))
    return tuple(edits)


def edit_labels(edits: Sequence[Edit]) -> list[str]:
    """File-name label per edit: the direction name, plus the factor when a direction is used more than once."""
    counts: dict[str, int] = {}
    for e in edits:
        counts[e.name] = counts.get(e.name, 0) + 1
    labels = [e.name if counts[e.name] == 1 else f"{e.name}{e.factor:+g}" for e in edits]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the edits {', '.join(labels)} repeat one another; give each direction/factor once")
    return labels


def transfer_label(spec: str | os.PathLike) -> str:
    """File-name label of a transfer generator: its stem (toonify.safetensors -> toonify)."""
    name = Path(spec).name
    return name[:-len(".safetensors")] if name.endswith(".safetensors") else Path(name).stem or name


@dataclass
class RunOptions:
    """What `run_folder` does. Paths may be str or Path.

    Attributes:
        models: folder with hyperstyle_ffhq / faces_w_encoder (.safetensors), directions and generators.
        hyperstyle, w_encoder, restyle: explicit model files (default: the official names in `models`).
        align: FFHQ-align each photo (dlib) first; False means the inputs are aligned crops (resized to the
            encoder input, as `invert`).
        align_size: side of the aligned crop written as `_aligned.png` (official align script: 1024).
        iterations: HyperStyle refinement iterations (official 5).
        fast: invert in fast mode (`inversion.refine`: 256-px intermediate renders, bf16 networks where bf16 is
            native, else int8 hypernetwork matrices on CPU); False (default) follows the official code.
        batch_size: images inverted together; None: `run.worker.default_batch_size` (1 on CPU, where one at a
            time is fastest, 4 on a GPU).
        edits: InterFaceGAN edits (`parse_edits`).
        transfers: generator files for domain adaptation (path, or a name in `models`).
        transfer_latent: "restyle" (official recipe: ReStyle-e4e W+ codes) or "w" (the W-encoder codes).
        paste: paste faces back into the photos (with alignment).
        products: which outputs to write (subset of PRODUCTS); `run` writes all of them.
        manages: the products whose earlier outputs in the output folder this run owns (default: `products`):
            an output of them that the options no longer produce (a removed edit) is deleted; outputs of other
            products (what `transfer` finds of an earlier `edit` into the same folder) are kept. `hyperstyle run`
            owns every product, so that --no-save-latents also removes the latents of an earlier run.
        deltas_dtype: how `_deltas.safetensors` is stored: None (as computed: exact float32 with the default
            model dtype), "float32", "float16" or "bfloat16" (half the bytes; renders from them differ slightly,
            see docs/cli.md).
        pattern: file-name patterns for folder inputs, ";"-separated, case-insensitive ("*" = every file).
        max_pixels: larger pictures are skipped before decoding.
        force: process every file again, ignoring the manifest.
        read_latents: `*_latent.safetensors` inputs (with their `_deltas` beside them) are edited/transferred
            instead of images (the edit and transfer commands).
        device, dtype: as `load`.
    """
    models: str | os.PathLike = "models"
    hyperstyle: str | os.PathLike | None = None
    w_encoder: str | os.PathLike | None = None
    restyle: str | os.PathLike | None = None
    align: bool = True
    align_size: int = 1024
    iterations: int = 5
    fast: bool = False
    batch_size: int | None = None
    edits: tuple[Edit, ...] = ()
    transfers: tuple[str, ...] = ()
    transfer_latent: str = "restyle"
    paste: bool = True
    products: frozenset[str] = frozenset(PRODUCTS)
    manages: frozenset[str] | None = None
    deltas_dtype: str | None = None
    pattern: str = "*"
    max_pixels: int = DEFAULT_MAX_PIXELS
    force: bool = False
    read_latents: bool = False
    device: str | None = "auto"
    dtype: str | None = None

    def check(self) -> None:
        for name in ("iterations", "batch_size", "align_size", "max_pixels"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.fast, bool):
            raise ValueError(f"fast must be True or False, got {self.fast!r}")
        unknown = (set(self.products) | set(self.manages or ())) - set(PRODUCTS)
        if unknown:
            raise ValueError(f"unknown products {sorted(unknown)}; choose from {', '.join(PRODUCTS)}")
        if self.deltas_dtype is not None and self.deltas_dtype not in DELTAS_DTYPES:
            raise ValueError(f"deltas_dtype must be None or one of {', '.join(DELTAS_DTYPES)}, got "
                             f"{self.deltas_dtype!r}")
        if self.transfer_latent not in ("restyle", "w"):
            raise ValueError(f"transfer_latent must be 'restyle' or 'w', got {self.transfer_latent!r}")
        labels = edit_labels(self.edits) if "edits" in self.products else []
        labels += [transfer_label(t) for t in self.transfers] if "transfers" in self.products else []
        for label in labels:
            if label in RESERVED_LABELS or label.endswith("_pasted") or not _LABEL.match(label):
                raise ValueError(f"{label!r} cannot name an edit or transfer output (it clashes with the names "
                                 f"{', '.join(sorted(RESERVED_LABELS))}); rename the direction or generator file")
        if len(set(labels)) != len(labels):
            raise ValueError(f"edits and transfers must have distinct names, got {', '.join(labels)}")

    @property
    def managed(self) -> frozenset[str]:
        """`manages`, or `products` when not given."""
        return frozenset(self.products if self.manages is None else self.manages)

    @property
    def stored_deltas_dtype(self) -> str:
        """The dtype `_deltas.safetensors` is written in: `deltas_dtype`, else the models' dtype (float32)."""
        if self.deltas_dtype is not None:
            return self.deltas_dtype
        name = str(self.dtype or "float32").removeprefix("torch.")
        return name if name in DELTAS_DTYPES else "float32"

    @property
    def needs_models(self) -> bool:
        return bool(set(self.products) - {"aligned", "alignment"})
