"""The `RunOptions` of each folder sub-command (run, align, edit, transfer), built from its parsed flags.

Each sub-command has its own flags (cli/parser.py), so each has its own builder here: a flag a command does not
take is the library's default, said once in `RunOptions`, never guessed from a missing attribute.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..io.folders import LATENT_SUFFIX
from ..run.options import PRODUCTS, RunOptions, parse_edits

__all__ = ["run_options", "align_options", "edit_options", "transfer_options", "reads_latents"]


def _common(args: argparse.Namespace) -> dict[str, Any]:
    """The flags every folder command takes (parser._folder_options)."""
    return dict(align_size=args.align_size, batch_size=args.batch_size, pattern=args.pattern,
                max_pixels=args.max_pixels, force=args.force)


def _models(args: argparse.Namespace) -> dict[str, Any]:
    """The model flags of run, edit and transfer (parser._folder_options with models)."""
    return dict(models=args.models, hyperstyle=args.hyperstyle, w_encoder=args.w_encoder, device=args.device,
                dtype=args.dtype, iterations=args.iterations, fast=args.fast)


def _transfers(args: argparse.Namespace) -> dict[str, Any]:
    """The transfer flags of run and transfer (parser._transfer_flags)."""
    return dict(transfers=tuple(args.transfer or ()), transfer_latent=args.transfer_latent, restyle=args.restyle)


def run_options(args: argparse.Namespace) -> RunOptions:
    """`hyperstyle run`: every product (without latents and deltas under --no-save-latents, without deltas under
    --save-deltas none). `run` owns every product: outputs the options no longer ask for (--no-save-latents too)
    are removed."""
    products = set(PRODUCTS)
    if not args.save_latents:
        products -= {"latent", "deltas"}
    if args.save_deltas == "none":
        products -= {"deltas"}
    deltas_dtype = None if args.save_deltas in (None, "none") else args.save_deltas
    return RunOptions(**_common(args), **_models(args), **_transfers(args), align=args.align, paste=args.paste,
                      edits=parse_edits(args.edit), products=frozenset(products), manages=frozenset(PRODUCTS),
                      deltas_dtype=deltas_dtype)


def align_options(args: argparse.Namespace) -> RunOptions:
    """`hyperstyle align`: the aligned crops and their alignment records; no models."""
    return RunOptions(**_common(args), align=True, products=frozenset({"aligned", "alignment"}))


def reads_latents(inputs: list[str]) -> bool:
    """Whether edit/transfer inputs are saved latents (`*_latent.safetensors`, or folders holding them: a run's
    output) rather than photos."""
    return any(p.endswith(LATENT_SUFFIX) or (Path(p).is_dir() and any(Path(p).glob(f"*{LATENT_SUFFIX}")))
               for p in inputs)


def _edit_or_transfer(args: argparse.Namespace, products: set[str], **given: Any) -> RunOptions:
    """Photos are inverted first; latent files, or folders holding them, are rendered again (only they are
    taken from folders then)."""
    latent = reads_latents(args.inputs)
    options = {**_common(args), **_models(args), **given}
    if latent:
        options["pattern"] = f"*{LATENT_SUFFIX}"
    return RunOptions(**options, align=args.align, paste=args.paste, products=frozenset(products),
                      read_latents=latent)


def edit_options(args: argparse.Namespace) -> RunOptions:
    """`hyperstyle edit`: the edited faces (pasted back into aligned photos)."""
    return _edit_or_transfer(args, {"edits", "pasted"}, edits=parse_edits(args.edit))


def transfer_options(args: argparse.Namespace) -> RunOptions:
    """`hyperstyle transfer`: the faces rendered by other generators."""
    return _edit_or_transfer(args, {"transfers"}, **_transfers(args))
