"""Command line: `hyperstyle` / `python -m hyperstyle_core` with sub-commands

    download  fetch official checkpoints by name (resumable, verified) and convert them into models/
    convert   official .pt checkpoints -> safetensors
    align     FFHQ-align the faces of photos (folder or files) -> <name>_aligned.png + <name>_alignment.json
    invert    invert aligned crops -> <name>_inversion.png, _latent and _deltas .safetensors
    edit      InterFaceGAN edits of photos, or of saved latent + deltas files
    transfer  domain adaptation (Toonify, StyleGAN-NADA) of photos or saved latent + deltas files
    run       the whole chain on a folder: align, invert, edit, transfer, paste back; resumable, with a manifest
    bench     benchmark
    ganspace, styleclip-stats, styleclip-directions, clip-convert, fit-direction, animate: see cli_edit.py

Exit codes: 0 success, 1 some inputs failed (see the manifest), 2 bad arguments / models / an output folder that
cannot be written, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). File names are shown escaped (`printable`).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from ..inversion import invert
from ..io import download as dl
from ..io.checkpoints import DEFAULT_FILES, load, read_info
from ..io.convert import convert
from ..io.files import atomic_path
from ..io.folders import IMAGE_PATTERN, escape_undecodable, list_folder, printable
from ..io.images import DEFAULT_MAX_PIXELS, open_rgb, pil_to_input, tensor_to_pil
from ..io.latents import save_latent
from ..run.manifest import RunSummary
from ..run.naming import unique_stems
from ..run.options import LATENT_SUFFIX, PRODUCTS, RunOptions, parse_edits
from ..run.runner import run_folder
from .bench import main as bench_main

log = logging.getLogger("hyperstyle_core")


def _cmd_convert(args) -> int:
    """Convert every file given; a bad file is reported and the others still convert (exit 1 if any failed)."""
    failed = 0
    for src in args.src:
        try:
            out = convert(src, args.out, overwrite=args.overwrite)
        except (ValueError, OSError) as e:      # OSError: FileNotFoundError, FileExistsError, an unwritable --out
            print(f"error: {src}: {e}", file=sys.stderr)
            failed += 1
            continue
        info = read_info(out)
        config = info["config"]
        detail = f"{config['generator']['size']}px" if "generator" in config else f"shape {config.get('shape')}"
        print(f"{src} -> {out} ({info['kind']}, {detail})")
    if failed:
        print(f"error: {failed} of {len(args.src)} files could not be converted (see above)", file=sys.stderr)
    return 1 if failed else 0


def _collect_images(paths: list[str]) -> list[Path]:
    """Files as given; folders -> their image files (io.folders.IMAGE_SUFFIXES), sorted by name."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += list_folder(p, IMAGE_PATTERN)
        else:
            files.append(p)
    return files


def _distinct(files: list[Path]) -> list[Path]:
    """`files` without repeats of the same path (a file given twice is inverted once)."""
    return list(dict.fromkeys(files))


def _cmd_invert(args) -> int:
    models = Path(args.models)
    hs_path = Path(args.hyperstyle) if args.hyperstyle else models / DEFAULT_FILES["hyperstyle"]
    we_path = Path(args.w_encoder) if args.w_encoder else models / DEFAULT_FILES["w_encoder"]
    hs = load(hs_path, args.device, args.dtype, expect="hyperstyle")
    we = load(we_path, args.device, args.dtype, expect="w_encoder")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _distinct(_collect_images(args.images))
    if not files:
        print("error: no images given (JPEG/PNG files or folders)", file=sys.stderr)
        return 2
    # d1/a.png, d1/a.jpg, d2/a.png -> a_png, a_jpg, a_png_2: clashing names never overwrite each other's results
    stems = unique_stems([p.name for p in files])
    spec = hs.input_spec
    failures = 0
    for path, stem in tqdm(list(zip(files, stems)), unit="image", desc="invert"):
        try:
            x = pil_to_input(open_rgb(path), spec.height, spec.width)
        except (ValueError, FileNotFoundError) as e:
            tqdm.write(f"skipped {printable(str(path))}: {printable(str(e))}")
            failures += 1
            continue
        t0 = time.perf_counter()
        result = invert(x, hs, we, n_iters=args.iterations)
        source = {"source_image": escape_undecodable(path.name)}
        with atomic_path(out_dir / f"{stem}_inversion.png") as tmp:
            tensor_to_pil(result.final[0]).save(tmp, format="PNG")
        if args.save_iterations:
            for i, image in enumerate(result.images, 1):
                with atomic_path(out_dir / f"{stem}_iter{i}.png") as tmp:
                    tensor_to_pil(image[0]).save(tmp, format="PNG")
        result.deltas.save(out_dir / f"{stem}_deltas.safetensors", source)
        save_latent(out_dir / f"{stem}_latent.safetensors", result.latent, extra_metadata=source)
        tqdm.write(f"{printable(path.name)}: {time.perf_counter() - t0:.1f} s -> "
                   f"{printable(str(out_dir / (stem + '_inversion.png')))}")
        del result
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 1 if failures else 0


def _run_options(args, products, **extra):
    return RunOptions(
        models=getattr(args, "models", "models"), hyperstyle=getattr(args, "hyperstyle", None),
        w_encoder=getattr(args, "w_encoder", None), restyle=getattr(args, "restyle", None), align=args.align,
        align_size=args.align_size,
        iterations=getattr(args, "iterations", 5), batch_size=args.batch_size,
        edits=parse_edits(getattr(args, "edit", None)), transfers=tuple(getattr(args, "transfer", None) or ()),
        transfer_latent=getattr(args, "transfer_latent", "restyle"), paste=getattr(args, "paste", True),
        products=frozenset(products), pattern=args.pattern, max_pixels=args.max_pixels, force=args.force,
        device=getattr(args, "device", "auto"), dtype=getattr(args, "dtype", None), **extra)


def _report(record, summary) -> None:
    if record["status"] != "ok":
        tqdm.write(f"{record['status']}: {printable(record['file'])}: {printable(str(record['reason']))}",
                   file=sys.stderr)


def _stopped_line(summary: RunSummary | None, manifest: Path) -> str:
    """What an interrupted folder run had finished (each finished file has its manifest line)."""
    if summary is None:
        return "stopped before any file was finished"
    done = summary.ok + summary.skipped + summary.error
    return (f"stopped after {done} of {summary.total - summary.already_done - summary.skipped_before} files to do "
            f"({summary.ok} ok, {summary.skipped} skipped, {summary.error} errors); finished files are recorded in "
            f"{printable(str(manifest))}")


def _folder_run(inputs, args, options) -> int:
    output = Path(args.output)
    latest: list[RunSummary] = []

    def on_record(record, summary) -> None:
        latest[:] = [summary]
        _report(record, summary)
    try:
        summary = run_folder(inputs, output, options, progress=not args.quiet, on_record=on_record)
    except KeyboardInterrupt:
        print(_stopped_line(latest[0] if latest else None, output / "manifest.jsonl"), file=sys.stderr)
        raise
    print(f"{summary.line()}\nmanifest: {printable(str(output / 'manifest.jsonl'))}")
    return 1 if summary.error else 0


def _cmd_run(args) -> int:
    products = set(PRODUCTS)
    if not args.save_latents:
        products -= {"latent", "deltas"}
    return _folder_run(args.input, args, _run_options(args, products))


def _cmd_align(args) -> int:
    args.align = True
    return _folder_run(args.inputs, args, _run_options(args, {"aligned", "alignment"}))


def _cmd_edit(args) -> int:
    return _edit_or_transfer(args, {"edits", "pasted"})


def _cmd_transfer(args) -> int:
    return _edit_or_transfer(args, {"transfers"})


def _edit_or_transfer(args, products) -> int:
    """Photos are inverted first; latent files, or folders holding them (a run's output), are rendered again."""
    latent = any(p.endswith(LATENT_SUFFIX) or (Path(p).is_dir() and any(Path(p).glob(f"*{LATENT_SUFFIX}")))
                 for p in args.inputs)
    if latent:
        args.pattern = f"*{LATENT_SUFFIX}"
    return _folder_run(args.inputs, args, _run_options(args, products, read_latents=latent))


def _cmd_download(args) -> int:
    if args.list:
        print(dl.describe_registry())
        return 0
    if not args.names:
        print("error: name the checkpoints to download (see --list), e.g. hyperstyle download faces", file=sys.stderr)
        return 2
    names = dl.expand_names(args.names)
    if (args.url or args.sha256 or args.size) and len(names) != 1:
        print("error: --url, --sha256 and --size apply to a single checkpoint; name exactly one", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        try:
            path = dl.download(name, args.models, url=args.url, sha256=args.sha256, size=args.size,
                               mirror=args.mirror, keep_source=args.keep_pt, force=args.force, retries=args.retries,
                               progress=not args.quiet)
        except (ValueError, FileNotFoundError, OSError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name} -> {path}")
    return 1 if failed else 0


def _cmd_bench(rest: list[str]) -> int:
    return bench_main(rest)     # the benchmark parses its own arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hyperstyle_core", description="HyperStyle in pure PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("convert", help="convert official .pt checkpoints to safetensors")
    c.add_argument("src", nargs="+", help="official checkpoint(s): hyperstyle_ffhq.pt, faces_w_encoder.pt, ...")
    c.add_argument("--out", default=None, help="output folder (default: beside the source)")
    c.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                   help="replace an existing .safetensors (default yes)")
    c.set_defaults(func=_cmd_convert)

    i = sub.add_parser("invert", help="invert aligned face photos (256x256 after resizing)")
    i.add_argument("images", nargs="+", help="aligned image files or folders")
    i.add_argument("--models", default="models", help="folder with hyperstyle_ffhq / faces_w_encoder .safetensors")
    i.add_argument("--hyperstyle", default=None, help="HyperStyle model file (overrides --models)")
    i.add_argument("--w-encoder", default=None, help="W-encoder file (overrides --models)")
    i.add_argument("--out", default="output", help="output folder")
    i.add_argument("--iterations", type=int, default=5, help="refinement iterations (official default 5)")
    i.add_argument("--save-iterations", action="store_true", help="also write every iteration's image")
    i.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps")
    i.add_argument("--dtype", default=None, help="float32 (default), float16 or bfloat16 (GPU only)")
    i.set_defaults(func=_cmd_invert)

    d = sub.add_parser("download", help="download official checkpoints by name and convert them into models/",
                       description="Download official checkpoints (resuming interrupted transfers, verifying size "
                                   "and sha256 where known) and convert them to safetensors in the models folder.")
    d.add_argument("names", nargs="*", help="checkpoint names or groups (see --list), e.g. faces, hyperstyle_ffhq, age")
    d.add_argument("--models", default="models", help="models folder (default models/)")
    d.add_argument("--mirror", default=os.environ.get("HYPERSTYLE_DOWNLOAD_BASE") or None,
                   help="base URL of a mirror holding the official file names (default: $HYPERSTYLE_DOWNLOAD_BASE); "
                        "replaces the official links")
    d.add_argument("--url", default=None, help="download this URL instead (one name only)")
    d.add_argument("--sha256", default=None, help="expected sha256 of the downloaded file (one name only)")
    d.add_argument("--size", type=int, default=None, help="expected size in bytes (one name only)")
    d.add_argument("--keep-pt", action="store_true", help="keep the original .pt beside the converted file")
    d.add_argument("--force", action="store_true", help="download again even if the converted file exists")
    d.add_argument("--retries", type=int, default=3, help="resume attempts after a dropped connection (default 3)")
    d.add_argument("--list", action="store_true", help="list the known checkpoints and groups")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_download)

    def folder_options(q, models=True):
        q.add_argument("--output", "--out", dest="output", default="output", help="output folder (default output/)")
        if models:
            q.add_argument("--models", default="models", help="models folder (default models/)")
            q.add_argument("--hyperstyle", default=None, help="HyperStyle model file (default MODELS/hyperstyle_ffhq)")
            q.add_argument("--w-encoder", default=None, help="W-encoder file (default MODELS/faces_w_encoder)")
            q.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
            q.add_argument("--dtype", default=None, help="float32 (default), float16 or bfloat16 (GPU only)")
            q.add_argument("--iterations", type=int, default=5, help="refinement iterations (official default 5)")
        q.add_argument("--batch-size", type=int, default=None,
                       help="images processed together (default: 1 on CPU, where it is fastest, 4 on a GPU)")
        q.add_argument("--align-size", type=int, default=1024,
                       help="side of the aligned crop (official align script: 1024); the encoders see it at 256")
        q.add_argument("--pattern", default="*", help='file names to take from folders, ";"-separated globs '
                                                     '(default: every file; non-images are recorded as skipped)')
        q.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                       help=f"skip pictures with more pixels than this (default {DEFAULT_MAX_PIXELS // 10**6} million)")
        q.add_argument("--force", action="store_true", help="process every file again, ignoring the manifest")
        q.add_argument("--quiet", action="store_true", help="no progress bar")

    def align_flag(q):
        q.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                       help="FFHQ-align faces first (default); --no-align: inputs are aligned crops")
        q.add_argument("--paste", action=argparse.BooleanOptionalAction, default=True,
                       help="paste the faces back into the photos (with alignment; default yes)")

    def edit_flags(q, required=False):
        q.add_argument("--edit", action="append", default=None, required=required,
                       help="InterFaceGAN edits NAME=FACTOR[,NAME=FACTOR...], e.g. age=+3,smile=-1 (direction files "
                            "NAME.safetensors or NAME.pt in --models); repeatable")

    def transfer_flags(q, required=False):
        q.add_argument("--transfer", action="append", default=None, required=required,
                       help="generator for domain adaptation, e.g. toonify.safetensors (path or name in --models); "
                            "renders with the image's deltas on the official Toonify layers; repeatable")
        q.add_argument("--transfer-latent", choices=["restyle", "w"], default="restyle",
                       help="codes rendered by --transfer: restyle (official: ReStyle-e4e, needs "
                            "restyle_e4e_ffhq_encode.safetensors) or w (the W-encoder codes)")
        q.add_argument("--restyle", default=None, help="ReStyle-e4e file (default MODELS/restyle_e4e_ffhq_encode)")

    r = sub.add_parser("run", help="align, invert, edit, transfer and paste back a whole folder (resumable)",
                       description="The whole chain on a folder, streamed in batches. Writes OUTPUT/manifest.jsonl "
                                   "(one line per input: ok, skipped or error with a reason) and per image "
                                   "<name>_aligned.png, _alignment.json, _inversion.png, _pasted.png, _<edit>.png, "
                                   "_<edit>_pasted.png, _<transfer>.png, _latent.safetensors, _deltas.safetensors. "
                                   "Re-running skips finished images.")
    r.add_argument("--input", nargs="+", required=True, help="input folder (or folders / image files)")
    folder_options(r)
    align_flag(r)
    edit_flags(r)
    transfer_flags(r)
    r.add_argument("--save-latents", action=argparse.BooleanOptionalAction, default=True,
                   help="write _latent and _deltas .safetensors (default yes; needed by edit/transfer later)")
    r.set_defaults(func=_cmd_run)

    a = sub.add_parser("align", help="FFHQ-align the faces in photos (dlib): <name>_aligned.png + _alignment.json")
    a.add_argument("inputs", nargs="+", help="photos or folders")
    folder_options(a, models=False)
    a.set_defaults(func=_cmd_align)

    e = sub.add_parser("edit", help="InterFaceGAN edits of photos, or of saved _latent/_deltas files",
                       description="Inputs are photos (inverted first; aligned unless --no-align) or "
                                   "*_latent.safetensors files / a run's output folder (re-rendered with their "
                                   "_deltas). Writes <name>_<edit>.png (and _<edit>_pasted.png for aligned photos).")
    e.add_argument("inputs", nargs="+", help="photos, folders, or *_latent.safetensors files")
    folder_options(e)
    align_flag(e)
    edit_flags(e, required=True)
    e.set_defaults(func=_cmd_edit)

    t = sub.add_parser("transfer", help="domain adaptation (e.g. Toonify) of photos or saved _latent/_deltas files",
                       description="Renders each image's latent with a fine-tuned generator, keeping its HyperStyle "
                                   "deltas on the official Toonify layers. Writes <name>_<generator>.png.")
    t.add_argument("inputs", nargs="+", help="photos, folders, or *_latent.safetensors files")
    folder_options(t)
    align_flag(t)
    transfer_flags(t, required=True)
    t.set_defaults(func=_cmd_transfer)

    sub.add_parser("bench", help="benchmark (see python -m hyperstyle_core.bench --help)", add_help=False)

    from .editing import add_edit_commands  # ganspace, styleclip-*, clip-convert, fit-direction, animate
    add_edit_commands(sub)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a terminated command stops as Ctrl-C stops it."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


@contextlib.contextmanager
def _sigterm_stops_like_ctrl_c() -> Iterator[None]:
    """While a command runs, SIGTERM raises Terminated (handlers can only be set from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with _sigterm_stops_like_ctrl_c():
            return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2
    except OSError as e:    # the disk or the folders, not an input: a setup problem, said in one line
        print(f"error: {printable(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        terminated = isinstance(e, Terminated)
        print(f"{'terminated (SIGTERM)' if terminated else 'interrupted'}; run the same command again to continue "
              f"where it stopped", file=sys.stderr)
        return 143 if terminated else 130
