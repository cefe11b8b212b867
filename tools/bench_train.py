"""Training speed on this machine: optimiser steps/s of the official recipe (Ranger, 5 iterations per batch, L2 +
LPIPS + ID) with recipe weights at 256 (hyperstyle_ffhq_256 + faces_w_encoder_256 + the loss networks), and the
peak resident memory.

    python tools/bench_train.py                      # batch 1 and 2, 2 timed steps each after one warm-up step
    python tools/bench_train.py --batch-sizes 1 --steps 3 --iters 5 --threads 2
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from hyperstyle_core import convert  # noqa: E402
from hyperstyle_core.nn.hypernetwork import HyperNetConfig  # noqa: E402
from hyperstyle_core.nn.networks import HyperStyleModel, InputSpec, WEncoderModel  # noqa: E402
from hyperstyle_core.nn.stylegan2 import GeneratorConfig  # noqa: E402
from hyperstyle_core.train.losses import LossWeights, load_losses  # noqa: E402
from hyperstyle_core.train.optim import make_optimizer  # noqa: E402
from hyperstyle_core.train.step import train_step  # noqa: E402

SHARED = REPO.parent / "shared" / "fixtures" / "official"
LOSS_FILES = {"ir_se50": "model_ir_se50.pth", "alexnet": "alexnet-owt-7be5be79.pth", "lpips_alex_lin": "alex.pth"}


def _recipe():
    spec = importlib.util.spec_from_file_location("recipe", SHARED / "recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fill(module: torch.nn.Module, recipe, kind: str) -> None:
    manifest = json.loads((SHARED / "manifests" / f"{kind}.json").read_text())
    entries = {e["key"]: e for c in manifest["containers"].values() for e in c}
    entries.update({e["key"]: e for e in manifest.get("top_level", {}).values()})
    module.load_state_dict({k: recipe.make_tensor(entries[k]) for k in module.state_dict()}, strict=True)


def _loss(recipe, folder: Path):
    for kind, name in LOSS_FILES.items():
        manifest = json.loads((SHARED / "manifests" / f"{kind}.json").read_text())
        torch.save({e["key"]: recipe.make_tensor(e) for c in manifest["containers"].values() for e in c
                    if not e["key"].startswith("classifier.")}, folder / name)
        convert(folder / name, folder)
    return load_losses(LossWeights(), folder)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-sizes", default="1,2")
    p.add_argument("--steps", type=int, default=2, help="timed steps per batch size (after one warm-up step)")
    p.add_argument("--iters", type=int, default=5)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    recipe = _recipe()
    model = HyperStyleModel(HyperNetConfig(GeneratorConfig(256)), InputSpec())
    _fill(model, recipe, "hyperstyle_ffhq_256")
    w_encoder = WEncoderModel(GeneratorConfig(256), InputSpec())
    _fill(w_encoder, recipe, "faces_w_encoder_256")
    w_encoder.eval().requires_grad_(False)
    with tempfile.TemporaryDirectory() as tmp:
        loss_fn = _loss(recipe, Path(tmp))
    model.requires_grad_(False)
    model.hypernet.requires_grad_(True).train()
    optimizer = make_optimizer(model.hypernet.parameters())
    print(f"threads {args.threads}, 256px, {args.iters} iterations per batch, Ranger, L2 + LPIPS + ID")
    for batch in map(int, args.batch_sizes.split(",")):
        x = torch.rand(batch, 3, 256, 256) * 2 - 1
        train_step(model, w_encoder, loss_fn, optimizer, x, x, args.iters)       # warm-up (optimiser state)
        start = time.perf_counter()
        for _ in range(args.steps):
            train_step(model, w_encoder, loss_fn, optimizer, x, x, args.iters)
        seconds = (time.perf_counter() - start) / args.steps
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"batch {batch}: {1 / seconds:.4f} steps/s ({seconds:.1f} s/step, {batch / seconds:.3f} images/s), "
              f"peak RSS so far {peak_gb:.1f} GB", flush=True)


if __name__ == "__main__":
    main()
