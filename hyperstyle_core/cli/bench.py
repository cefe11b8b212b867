"""Benchmark: per-stage times and peak memory of a full HyperStyle inversion (a script, not a test).

    hyperstyle bench                       # FFHQ 1024 config, recipe weights, batch 1 and 4, exact and fast
    hyperstyle bench --models models/      # the user's converted hyperstyle_ffhq + faces_w_encoder

Per stage: wall time, GFLOP (counted once by torch's FlopCounterMode during the warm-up; fast mode's int8 products
are not counted, so its hypernet GFLOP/s is a lower bound), GFLOP/s; then peak RSS (and peak CUDA memory).

Recipe weights come from ../shared/fixtures/official/recipe.py (override with --recipe).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..io import checkpoints, convert
from ..devices import resolve_device, resolve_dtype
from ..inversion import invert
from ..nn.engine import InferenceEngine
from .parser import build_bench_parser, default_recipe

DEFAULT_RECIPE = Path(default_recipe())


def rss_gib(field: str = "VmRSS") -> float:
    """This process's resident memory in GiB from /proc/self/status (`field` "VmHWM": the peak); NaN off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return float("nan")


def peak_rss_gib() -> float:
    return rss_gib("VmHWM")


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _load_recipe(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"recipe.py not found at {path}; pass --recipe or --models")
    spec = importlib.util.spec_from_file_location("hyperstyle_recipe", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_models(args, device, dtype):
    if args.models:
        models = Path(args.models)
        hs = checkpoints.load(models / "hyperstyle_ffhq.safetensors", device, dtype, expect="hyperstyle")
        we = checkpoints.load(models / "faces_w_encoder.safetensors", device, dtype, expect="w_encoder")
        return hs, we
    recipe = _load_recipe(Path(args.recipe))
    manifests = Path(args.recipe).parent / "manifests"
    out = []
    for name in (f"hyperstyle_ffhq_{args.size}", f"faces_w_encoder_{args.size}"):
        ckpt = recipe.make_checkpoint(manifests / f"{name}.json")
        out.append(convert.from_checkpoint(ckpt, device, dtype, name))
        del ckpt
    return tuple(out)


class StageTimer:
    """Wall time (and optionally FLOPs) of each call of a module or an engine method (synchronising CUDA)."""

    def __init__(self, device: torch.device, count_flops: bool = False):
        self.device = device
        self.count_flops = count_flops
        self.times: dict[str, list[float]] = defaultdict(list)
        self.flops: dict[str, list[int]] = defaultdict(list)
        self._start: dict[str, float] = {}
        self._counter: dict[str, FlopCounterMode] = {}
        self._handles = []
        self._restore: list[tuple[type, str, object]] = []

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        elif self.device.type == "mps":
            torch.mps.synchronize()

    def _begin(self, name: str) -> None:
        self._sync()
        if self.count_flops:
            self._counter[name] = FlopCounterMode(display=False)
            self._counter[name].__enter__()
        self._start[name] = time.perf_counter()

    def _end(self, name: str) -> None:
        self._sync()
        self.times[name].append(time.perf_counter() - self._start[name])
        if self.count_flops:
            counter = self._counter.pop(name)
            counter.__exit__(None, None, None)
            self.flops[name].append(counter.get_total_flops())

    def watch(self, module: torch.nn.Module, name: str):
        self._handles += [module.register_forward_pre_hook(lambda _m, _i: self._begin(name)),
                          module.register_forward_hook(lambda _m, _i, _o: self._end(name))]

    def watch_method(self, owner: type, method: str, name: str):
        """Time every call of `owner.method` (the engine's passes run the networks' parts, not their forward)."""
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            self._begin(name)
            try:
                return original(*args, **kwargs)
            finally:
                self._end(name)

        setattr(owner, method, timed)
        self._restore.append((owner, method, original))

    def close(self):
        for h in self._handles:
            h.remove()
        for owner, method, original in reversed(self._restore):
            setattr(owner, method, original)
        self._restore.clear()


def _watched(we, device: torch.device, count_flops: bool) -> StageTimer:
    """Timers on the stages the inversion runs: the W-encoder, the engine's hypernetwork and generator passes."""
    timer = StageTimer(device, count_flops)
    timer.watch(we.encoder, "w_encoder")
    timer.watch_method(InferenceEngine, "predict_deltas", "hypernet")
    timer.watch_method(InferenceEngine, "render", "generator")
    return timer


def _stage_line(label: str, seconds: float, flops: int | None) -> str:
    if not flops:
        return f"  {label:24s} {seconds:8.3f} s"
    return f"  {label:24s} {seconds:8.3f} s  {flops / 1e9:8.1f} GFLOP  {flops / 1e9 / seconds:7.1f} GFLOP/s"


def run(batch: int, hs, we, n_iters: int, device: torch.device, repeats: int, fast: bool = False) -> None:
    images = torch.rand(batch, 3, hs.input_spec.height, hs.input_spec.width, generator=torch.Generator().manual_seed(0))
    images = (images * 2 - 1).to(device)
    # Warm-up (allocator, kernels, fast mode's int8 copies) with a FLOP count of every stage: the first and the
    # last generator call are the initial render and a final (full) render, in either mode.
    counter = _watched(we, device, count_flops=True)
    invert(images, hs, we, n_iters=1, fast=fast)
    counter.close()
    flops = counter.flops
    mode = "fast" if fast else "exact"
    for rep in range(repeats):
        timer = _watched(we, device, count_flops=False)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        _reset_peak_rss()
        t0 = time.perf_counter()
        invert(images, hs, we, n_iters=n_iters, fast=fast)
        timer._sync()
        total = time.perf_counter() - t0
        timer.close()
        _report(batch, mode, rep, total, timer.times, flops, n_iters, device)


def _report(batch: int, mode: str, rep: int, total: float, times: dict[str, list[float]],
            flops: dict[str, list[int]], n_iters: int, device: torch.device) -> None:
    gens, hypers, w_time = times["generator"], times["hypernet"], times["w_encoder"][0]
    gen_flops = [flops["generator"][0]] + [flops["generator"][0]] * (n_iters - 1) + [flops["generator"][-1]]
    total_flops = flops["w_encoder"][0] + flops["hypernet"][0] * n_iters + sum(gen_flops)
    print(f"batch {batch} {mode} run {rep + 1}: total {total:.2f} s ({total / batch:.2f} s/image), "
          f"{total_flops / 1e9:.1f} GFLOP, {total_flops / 1e9 / total:.1f} GFLOP/s")
    print(_stage_line("W-encoder", w_time, flops["w_encoder"][0]))
    print(_stage_line("initial generator", gens[0], gen_flops[0]))
    for i, (h, g) in enumerate(zip(hypers, gens[1:]), 1):
        print(_stage_line(f"iteration {i}: hypernet", h, flops["hypernet"][0]))
        print(_stage_line(f"iteration {i}: generator", g, gen_flops[i]))
    hyper_sum, gen_sum = sum(hypers), sum(gens)
    print(f"  sums: W-encoder {w_time:.2f} s, hypernet {hyper_sum:.2f} s, generator {gen_sum:.2f} s, "
          f"other {total - hyper_sum - gen_sum - w_time:.2f} s")
    if device.type == "cuda":
        print(f"  peak CUDA memory {torch.cuda.max_memory_allocated() / 2 ** 30:.2f} GiB")
    print(f"  peak RSS during inversion {peak_rss_gib():.2f} GiB (RSS now {rss_gib():.2f} GiB)")


def main(argv: list[str] | None = None, prog: str = "python -m hyperstyle_core.bench") -> int:
    args = build_bench_parser(prog, str(DEFAULT_RECIPE)).parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype(args.dtype, device)
    print(f"torch {torch.__version__}, device {device}, dtype {dtype}, threads {torch.get_num_threads()}, "
          f"cpus {os.cpu_count()}")
    t0 = time.perf_counter()
    hs, we = load_models(args, device, dtype)
    print(f"models ready in {time.perf_counter() - t0:.1f} s, RSS {rss_gib():.2f} GiB "
          f"(peak so far {peak_rss_gib():.2f} GiB)")
    for mode in args.mode:
        for batch in args.batch:
            run(batch, hs, we, args.iters, device, args.repeats, fast=mode == "fast")
    return 0


if __name__ == "__main__":
    sys.exit(main())
