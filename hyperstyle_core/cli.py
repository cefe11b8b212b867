"""Command line: `python -m hyperstyle_core {convert,invert,bench} ...`."""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("hyperstyle_core")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


def _cmd_convert(args) -> int:
    from .checkpoints import convert, read_info
    failed = 0
    for src in args.src:
        try:
            out = convert(src, args.out, overwrite=args.overwrite)
        except (ValueError, FileNotFoundError, FileExistsError) as e:
            print(f"error: {src}: {e}", file=sys.stderr)
            failed += 1
            continue
        info = read_info(out)
        config = info["config"]
        detail = f"{config['generator']['size']}px" if "generator" in config else f"shape {config.get('shape')}"
        print(f"{src} -> {out} ({info['kind']}, {detail})")
    return 1 if failed else 0


def _collect_images(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(p)
    return files


def _cmd_invert(args) -> int:
    import torch
    from tqdm import tqdm

    from .checkpoints import load
    from .images import open_rgb, pil_to_input, tensor_to_pil
    from .inversion import invert
    from .io_utils import atomic_path

    models = Path(args.models)
    hs_path = Path(args.hyperstyle) if args.hyperstyle else models / "hyperstyle_ffhq.safetensors"
    we_path = Path(args.w_encoder) if args.w_encoder else models / "faces_w_encoder.safetensors"
    hs = load(hs_path, args.device, args.dtype, expect="hyperstyle")
    we = load(we_path, args.device, args.dtype, expect="w_encoder")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = _collect_images(args.images)
    if not files:
        print("error: no images given (JPEG/PNG files or folders)", file=sys.stderr)
        return 2
    spec = hs.input_spec
    failures = 0
    for path in tqdm(files, unit="image", desc="invert"):
        try:
            x = pil_to_input(open_rgb(path), spec.height, spec.width)
        except (ValueError, FileNotFoundError) as e:
            tqdm.write(f"skipped {path}: {e}")
            failures += 1
            continue
        t0 = time.perf_counter()
        result = invert(x, hs, we, n_iters=args.iterations)
        stem = path.stem
        with atomic_path(out_dir / f"{stem}_inversion.png") as tmp:
            tensor_to_pil(result.final[0]).save(tmp, format="PNG")
        if args.save_iterations:
            for i, image in enumerate(result.images, 1):
                with atomic_path(out_dir / f"{stem}_iter{i}.png") as tmp:
                    tensor_to_pil(image[0]).save(tmp, format="PNG")
        result.deltas.save(out_dir / f"{stem}_deltas.safetensors", {"source_image": path.name})
        from safetensors.torch import save_file
        with atomic_path(out_dir / f"{stem}_latent.safetensors") as tmp:
            save_file({"latent": result.latent.contiguous().cpu()}, str(tmp),
                      metadata={"format": "hyperstyle.latent", "version": "1", "source_image": path.name})
        tqdm.write(f"{path.name}: {time.perf_counter() - t0:.1f} s -> {out_dir / (stem + '_inversion.png')}")
        del result
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return 1 if failures else 0


def _cmd_bench(rest: list[str]) -> int:
    from .bench import main
    return main(rest)


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

    sub.add_parser("bench", help="benchmark (see python -m hyperstyle_core.bench --help)", add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "bench":
        return _cmd_bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
