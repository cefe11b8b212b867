"""Images/s of `hyperstyle run` on the embedded engine and on Ray (1 and 2 actors), on the tiny test models and on
the FFHQ-1024 configuration with recipe weights (random weights of the official shapes: the same work as the real
checkpoints).

    python tools/bench_engines.py                          # tiny and 1024, 8 and 2 images
    python tools/bench_engines.py --configs tiny --images 16
    python tools/bench_engines.py --models-1024 DIR        # a folder with hyperstyle_ffhq / faces_w_encoder at 1024

Every run starts from an empty output folder (--no-align: synthetic crops, no dlib). "processing" is the runner's
own rate (RunSummary: embedded after the models loaded; Ray from the pipeline's start, actor start and model loads
included), "after the first result" the rate between the first and the last record (start-up excluded), "wall"
the whole call. Ray runs on a local instance with all of this machine's CPUs; one actor gets them
all, two actors half each. Also prints the resident memory one process needs to hold each configuration's models.
"""
from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hyperstyle_core.cli.bench import rss_gib  # noqa: E402 - the repository first on the path
from hyperstyle_core.devices import keep_freed_memory  # noqa: E402
from hyperstyle_core.io.convert import convert  # noqa: E402
from hyperstyle_core.run.models import RunModels, resolve_model_files  # noqa: E402
from hyperstyle_core.run.options import RunOptions  # noqa: E402
from hyperstyle_core.run.ray_engine import RayOptions, import_ray, run_folder_on_ray  # noqa: E402
from hyperstyle_core.run.runner import run_folder  # noqa: E402
from hyperstyle_core.testing import write_tiny_models  # noqa: E402

SHARED = Path(os.environ.get("HYPERSTYLE_SHARED", REPO.parent / "shared"))
RECIPE = SHARED / "fixtures" / "official" / "recipe.py"
FULL_SIZE = {"hyperstyle_ffhq_1024": "hyperstyle_ffhq", "faces_w_encoder_1024": "faces_w_encoder"}


def tiny_models(folder: Path) -> Path:
    write_tiny_models(folder)
    return folder


def full_size_models(folder: Path, existing: Path | None) -> Path:
    """hyperstyle_ffhq + faces_w_encoder at 1024: linked from `existing`, else built from the recipe (minutes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for kind, name in FULL_SIZE.items():
        target = folder / f"{name}.safetensors"
        if target.exists():
            continue
        if existing is not None:
            try:
                os.link(existing / target.name, target)
            except OSError:
                shutil.copy(existing / target.name, target)
            continue
        spec = importlib.util.spec_from_file_location("hyperstyle_recipe", RECIPE)
        recipe = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(recipe)
        pt = folder / f"{name}.pt"
        torch.save(recipe.make_checkpoint(RECIPE.parent / "manifests" / f"{kind}.json"), pt)
        convert(pt, folder)
        pt.unlink()
    return folder


def synthetic_crops(folder: Path, n: int, size: int) -> Path:
    shutil.rmtree(folder, ignore_errors=True)      # exactly n inputs, also in a reused --work folder
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"img_{i:03d}.png")
    return folder


def model_memory(options: RunOptions) -> float:
    """GiB of resident memory that loading the models adds to a process (what each actor holds)."""
    before = rss_gib()
    models = RunModels(options, resolve_model_files(options, photos=True)).need(invert=True)
    after = rss_gib()
    del models
    return after - before


def bench_config(name: str, models: Path, images: int, size: int, iterations: int, work: Path) -> list[str]:
    src = synthetic_crops(work / f"{name}_in", images, size)
    options = RunOptions(models=models, align=False, iterations=iterations, batch_size=1, device="cpu")
    cpus = os.cpu_count() or 1
    lines = [f"{name}: {images} images, {iterations} iteration(s), batch 1, {cpus} CPUs, torch {torch.__version__}",
             f"  models resident per process: {model_memory(options):.2f} GiB"]
    runs = [("embedded", None), ("ray, 1 actor", RayOptions(actors=1, cpus_per_actor=cpus)),
            ("ray, 2 actors", RayOptions(actors=2, cpus_per_actor=cpus / 2))]
    for label, ray_options in runs:
        out = work / f"{name}_{label.replace(' ', '').replace(',', '_')}"
        shutil.rmtree(out, ignore_errors=True)      # from scratch: a reused --work folder would be "already done"
        finished: list[float] = []      # when each record arrived: the rate after the first excludes start-up
        t0 = time.perf_counter()
        if ray_options is None:
            summary = run_folder(src, out, options, on_record=lambda r, s: finished.append(time.perf_counter()))
        else:
            summary = run_folder_on_ray(src, out, options, ray_options,
                                        on_record=lambda r, s: finished.append(time.perf_counter()))
        wall = time.perf_counter() - t0
        span = finished[-1] - finished[0] if len(finished) > 1 else 0.0
        steady = f"{(len(finished) - 1) / span:7.3f}" if span > 0 else "    n/a"
        lines.append(f"  {label:14s} processing {summary.images_per_second:7.3f} images/s   after the first result "
                     f"{steady} images/s   wall {summary.ok / wall:7.3f} images/s ({wall:6.1f} s, first result after "
                     f"{finished[0] - t0:5.1f} s, {summary.ok} ok)")
        print(lines[-1], flush=True)
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny,1024", help="comma-separated: tiny, 1024")
    p.add_argument("--images", type=int, default=None, help="images per run (default: 8 tiny, 2 at 1024)")
    p.add_argument("--iterations", type=int, default=1, help="HyperStyle refinement iterations (official 5)")
    p.add_argument("--models-1024", type=Path, default=None,
                   help="folder holding hyperstyle_ffhq.safetensors and faces_w_encoder.safetensors at 1024 "
                        "(default: build them from the recipe into --work)")
    p.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    keep_freed_memory()     # as `hyperstyle run` does at start-up (and each Ray actor)
    ray = import_ray()
    ray.init(include_dashboard=False, logging_level=logging.ERROR)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench_engines_"))
    report: list[str] = []
    try:
        for config in args.configs.split(","):
            if config == "tiny":
                models = tiny_models(work / "tiny_models")
                report += bench_config("tiny (64 px)", models, args.images or 8, 80, args.iterations, work)
            elif config == "1024":
                models = full_size_models(work / "models_1024", args.models_1024)
                report += bench_config("ffhq 1024 (recipe weights)", models, args.images or 2, 256, args.iterations,
                                       work)
            else:
                raise SystemExit(f"unknown config {config!r}; choose tiny or 1024")
    finally:
        ray.shutdown()
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
