"""Command line: `hyperstyle` / `python -m hyperstyle_core` with sub-commands

    download  fetch official checkpoints by name (resumable, verified) and convert them into models/
    convert   official .pt checkpoints -> safetensors
    align     FFHQ-align the faces of photos (folder or files) -> <name>_aligned.png + <name>_alignment.json
    invert    invert aligned crops -> <name>_inversion.png, _latent and _deltas .safetensors
    edit      InterFaceGAN edits of photos, or of saved latent + deltas files
    transfer  domain adaptation (Toonify, StyleGAN-NADA) of photos or saved latent + deltas files
    run       the whole chain on a folder: align, invert, edit, transfer, paste back; resumable, with a manifest
    evaluate  the paper's metrics (L2, LPIPS, ID, MS-SSIM) of predictions vs ground truths (cli/evaluate.py)
    bench     benchmark
    ganspace, styleclip-stats, styleclip-directions, clip-convert, fit-direction, animate: see editing.py

The argument parsers live in parser.py (no torch: `--help` answers at once); the package's `main`
(hyperstyle_core.cli.main, the entry point) parses there and imports this module only to run a command
(`run_command`, or `run_bench` for the benchmark, which parses its own arguments). The folder commands' options
are built per command in run_options.py.

Exit codes: 0 success, 1 some inputs failed (see the manifest), 2 bad arguments / models / an output folder that
cannot be written, 130 interrupted (Ctrl-C), 143 terminated (SIGTERM). File names are shown escaped (`printable`).
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import torch
from tqdm import tqdm

from ..devices import keep_freed_memory
from ..inversion import invert
from ..io import download as dl
from ..io.checkpoints import DEFAULT_FILES, load, read_info
from ..io.convert import convert
from ..io.files import atomic_path
from ..io.folders import IMAGE_PATTERN, escape_undecodable, list_folder, printable
from ..io.images import open_rgb, pil_to_input, tensor_to_pil
from ..io.latents import save_latent
from ..io.run_folder import MANIFEST_NAME, ManifestRecord, unique_stems
from ..run.manifest import RunSummary
from ..run.models import missing_model_message
from ..run.options import RunOptions
from ..run.ray_engine import RayOptions, run_folder_on_ray
from ..run.runner import OnRecord, run_folder
from ..run.steps import DELTAS_TORCH_DTYPES
from .bench import main as bench_main
from .parser import program_name
from .run_options import align_options, edit_options, run_options, transfer_options

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
    """Invert every image again (no manifest, no resume: its outputs always follow the options given)."""
    models = Path(args.models)
    hs_path = Path(args.hyperstyle) if args.hyperstyle else models / DEFAULT_FILES["hyperstyle"]
    we_path = Path(args.w_encoder) if args.w_encoder else models / DEFAULT_FILES["w_encoder"]
    for path, what in ((hs_path, "the HyperStyle model"), (we_path, "the W-encoder")):
        if not path.is_file():
            raise FileNotFoundError(missing_model_message(path, what))
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
        result = invert(x, hs, we, n_iters=args.iterations, fast=args.fast)
        source = {"source_image": escape_undecodable(path.name)}
        with atomic_path(out_dir / f"{stem}_inversion.png") as tmp:
            tensor_to_pil(result.final[0]).save(tmp, format="PNG")
        if args.save_iterations:
            for i, image in enumerate(result.images, 1):
                with atomic_path(out_dir / f"{stem}_iter{i}.png") as tmp:
                    tensor_to_pil(image[0]).save(tmp, format="PNG")
        if args.save_deltas != "none":
            storage = DELTAS_TORCH_DTYPES.get(args.save_deltas)     # None: as computed
            result.deltas.save(out_dir / f"{stem}_deltas.safetensors", source, dtype=storage)
        save_latent(out_dir / f"{stem}_latent.safetensors", result.latent, extra_metadata=source)
        tqdm.write(f"{printable(path.name)}: {time.perf_counter() - t0:.1f} s -> "
                   f"{printable(str(out_dir / (stem + '_inversion.png')))}")
        del result
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 1 if failures else 0


def _report(record: ManifestRecord, summary: RunSummary) -> None:
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


def _run_on_engine(inputs: list[str], output: Path, options: RunOptions, on_record: OnRecord, quiet: bool,
                   ray_options: RayOptions | None = None, input_list: str | None = None) -> RunSummary:
    """On Ray actors with `ray_options` (`run --engine ray`: run.ray_engine), otherwise in-process."""
    if ray_options is not None:
        return run_folder_on_ray(inputs, output, options, ray_options, progress=not quiet, on_record=on_record,
                                 input_list=input_list)
    return run_folder(inputs, output, options, progress=not quiet, on_record=on_record, input_list=input_list)


def _folder_run(inputs: list[str], args: argparse.Namespace, options: RunOptions,
                ray_options: RayOptions | None = None, input_list: str | None = None) -> int:
    output = Path(args.output)
    latest: list[RunSummary] = []

    def on_record(record: ManifestRecord, summary: RunSummary) -> None:
        latest[:] = [summary]
        _report(record, summary)
    try:
        summary = _run_on_engine(inputs, output, options, on_record, args.quiet, ray_options, input_list)
    except KeyboardInterrupt as e:
        # The runner attaches its summary; a signal between a manifest line and on_record leaves `latest` behind.
        summary = getattr(e, "summary", None) or (latest[0] if latest else None)
        print(_stopped_line(summary, output / MANIFEST_NAME), file=sys.stderr)
        raise
    print(f"{summary.line()}\nmanifest: {printable(str(output / MANIFEST_NAME))}")
    return 1 if summary.error else 0


def _cmd_run(args) -> int:
    ray_options = None
    if args.engine == "ray":
        ray_options = RayOptions(address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
                                 cpus_per_actor=args.cpus_per_actor)
    return _folder_run(args.input or [], args, run_options(args), ray_options, input_list=args.input_list)


def _cmd_align(args) -> int:
    return _folder_run(args.inputs, args, align_options(args))


def _cmd_edit(args) -> int:
    return _folder_run(args.inputs, args, edit_options(args))


def _cmd_transfer(args) -> int:
    return _folder_run(args.inputs, args, transfer_options(args))


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
    # download_each stops trying a host that could not be reached (one message, then "skipped" for its other files)
    for name, result in dl.download_each(names, args.models, url=args.url, sha256=args.sha256, size=args.size,
                                         mirror=args.mirror, keep_source=args.keep_pt, force=args.force,
                                         retries=args.retries, progress=not args.quiet):
        if isinstance(result, Exception):
            print(f"{'skipped' if isinstance(result, dl.HostSkipped) else 'error'}: {name}: {result}",
                  file=sys.stderr)
            failed += 1
        else:
            print(f"{name} -> {result}")
    return 1 if failed else 0


def run_bench(rest: list[str], prog: str | None = None) -> int:
    """`hyperstyle bench REST`: the benchmark parses its own arguments (cli/bench.py); `prog` is the program name
    shown in its help and errors (default: `hyperstyle`, or `python -m hyperstyle_core` under -m)."""
    keep_freed_memory()     # our own process: reuse freed 1024-px buffers instead of page-faulting them back
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return bench_main(rest, f"{prog or program_name()} bench")


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


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command (`args.func`), turning user errors and interruptions into exit codes."""
    keep_freed_memory()     # our own process (never ComfyUI's): reuse freed 1024-px buffers, no page-faulting back
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
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
