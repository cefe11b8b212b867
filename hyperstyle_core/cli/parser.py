"""Argument parsers of every sub-command, kept free of torch / numpy / PIL / tqdm.

`hyperstyle --help`, `hyperstyle SUB --help` and argument errors are answered from here alone, at once; the
command functions (cli/commands.py, cli/editing.py, ...) are imported only when a parsed command runs, through the
`Command` each sub-parser stores as `func`.

To add a flag to a folder command, add it in `_add_run` / `_add_edit` / `_add_transfer` (or in the shared
`_folder_options`, `_align_flags`, `_edit_flags`, `_transfer_flags` when several commands take it), and read it in
that command's builder of cli/run_options.py.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["build_parser", "add_edit_parsers", "program_name", "Command", "PROG", "MODULE_PROG",
           "DEFAULT_MAX_PIXELS"]

PACKAGE = __package__.rpartition(".")[0]      # hyperstyle_core (or the name the pack was loaded under)
PROG = "hyperstyle"                           # the installed entry point (pyproject [project.scripts])
MODULE_PROG = f"python -m {PACKAGE}"
# Same value as io.images.DEFAULT_MAX_PIXELS (a test pins it): that module imports torch, this one may not.
DEFAULT_MAX_PIXELS = 80_000_000
FAST_HELP = ("fast mode: 256-px intermediate renders, bf16 networks where bf16 is native, else int8 hypernetwork "
             "weights on CPU (faster, a slightly different result: docs/speed.md); the default follows the official "
             "code")


@dataclass(frozen=True)
class Command:
    """A sub-command's function, imported only when the command runs (parsing never imports torch)."""
    module: str       # absolute module name, e.g. hyperstyle_core.cli.commands
    function: str     # its function taking the parsed arguments and returning an exit code

    def __call__(self, args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(self.module), self.function)(args)


def _command(function: str) -> Command:
    return Command(f"{__package__}.commands", function)


def _editing_command(function: str) -> Command:
    return Command(f"{__package__}.editing", function)


def program_name(argv0: str | None = None) -> str:
    """`python -m hyperstyle_core` when run with -m (argv[0] is then the package's __main__.py), else `hyperstyle`."""
    argv0 = sys.argv[0] if argv0 is None else argv0
    return MODULE_PROG if Path(argv0).name == "__main__.py" else PROG


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `prog` defaults to `program_name()`."""
    p = argparse.ArgumentParser(prog=prog or program_name(), description="HyperStyle in pure PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)
    _add_convert(sub)
    _add_invert(sub)
    _add_download(sub)
    _add_run(sub)
    _add_align(sub)
    _add_edit(sub)
    _add_transfer(sub)
    _add_evaluate(sub)
    _add_train(sub)
    # The benchmark parses its own arguments (cli/bench.py); main() hands it everything after `bench`.
    sub.add_parser("bench", help=f"benchmark (see {p.prog} bench --help)", add_help=False)
    add_edit_parsers(sub)     # ganspace, styleclip-*, clip-convert, fit-direction, animate
    return p


# ------------------------------------------------------------------------------------------- single commands

def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("evaluate", help="the paper's metrics (L2, LPIPS, ID, MS-SSIM) of predictions vs ground truths",
                       description="Score reconstructions as the official scripts (calc_losses_on_images.py, "
                                   "calc_id_loss_parallel.py) do: images resized to 256x256, per-image L2, LPIPS, ID "
                                   "similarity and MS-SSIM, summarised as mean +- std; writes scores.csv and "
                                   "summary.json. Files that cannot be paired or read are listed, never fatal.")
    what = v.add_mutually_exclusive_group()
    what.add_argument("--pred", default=None, help="folder of predictions (paired with --gt by file name)")
    what.add_argument("--run", default=None, help="output folder of `hyperstyle run`: each <name>_inversion.png "
                                                  "against its aligned input")
    v.add_argument("--gt", default=None, help="folder of ground truths (with --pred)")
    v.add_argument("--models", default="models", help="folder with the metric networks (default models/)")
    v.add_argument("--metrics", default="l2,lpips,id,ms_ssim",
                   help="comma-separated metrics (default l2,lpips,id,ms_ssim); lpips and id need network files")
    v.add_argument("--out", default=None, help="report folder (default: inference_metrics beside --pred, as the "
                                               "official scripts, or inside --run)")
    v.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    v.add_argument("--quiet", action="store_true", help="no progress bar")
    v.set_defaults(func=Command(f"{__package__}.evaluate", "cmd_evaluate"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train (or fine-tune) the hypernetwork on folders of aligned images",
                       description="The official HyperStyle training (defaults: the official README command): the "
                                   "W-encoder and generator frozen, --iters refinement iterations per batch, one "
                                   "optimizer step per batch. Writes latest.safetensors, best.safetensors (load them "
                                   "like any HyperStyle model), train_state.safetensors, logs/metrics.jsonl and "
                                   "images/. "
                                   "Running the same command again continues the run exactly where it stopped.")
    t.add_argument("--train", required=True, help="folder of aligned training images (or `hyperstyle align` output)")
    t.add_argument("--test", required=True, help="folder of aligned validation images")
    t.add_argument("--generator", default=None, help="converted StyleGAN2 generator to train for (new model)")
    t.add_argument("--w-encoder", required=True, help="converted W-encoder of the same domain and resolution")
    t.add_argument("--from", dest="from_model", default=None,
                   help="converted HyperStyle model to fine-tune (its generator, unless --generator is given)")
    t.add_argument("--backbone", default=None, help="torchvision resnet34 ImageNet weights for a new hypernetwork "
                                                    "(resnet34-b627a593.pth; official start)")
    t.add_argument("--models", default="models", help="folder with the loss networks (default models/)")
    t.add_argument("--out", required=True, help="run folder")
    t.add_argument("--domain", default="faces", choices=("faces", "cars", "other"),
                   help="faces: ID loss, 256x256; cars: 192x256, MoCo loss; other: 256x256, MoCo loss")
    t.add_argument("--steps", type=int, default=500_000, help="optimizer steps (official --max_steps 500000)")
    t.add_argument("--batch-size", type=int, default=8, help="training batch (official README 8)")
    t.add_argument("--test-batch-size", type=int, default=None, help="validation batch (default: --batch-size)")
    t.add_argument("--iters", type=int, default=5, help="refinement iterations per batch (official README 5)")
    t.add_argument("--lr", type=float, default=1e-4, help="learning rate (official 1e-4)")
    t.add_argument("--optimizer", default="ranger", choices=("ranger", "adam"), help="official default ranger")
    t.add_argument("--l2", type=float, default=1.0, help="L2 loss weight (official 1)")
    t.add_argument("--lpips", type=float, default=0.8, help="LPIPS loss weight (official 0.8)")
    t.add_argument("--id", type=float, default=None, help="ID loss weight (default faces 0.1, others 0)")
    t.add_argument("--moco", type=float, default=None, help="MoCo loss weight (default faces 0, others 0.5)")
    t.add_argument("--train-decoder", action="store_true", help="train the generator too (official --train_decoder)")
    t.add_argument("--layers", default=None, help="generator layers to tune, e.g. 0,2,3 (default: the official 17)")
    t.add_argument("--seed", type=int, default=0, help="data order, flips and new-model initialisation")
    t.add_argument("--val-every", type=int, default=5000, help="validate every N steps (official README 5000)")
    t.add_argument("--max-val-batches", type=int, default=150, help="validation batches (official README 150)")
    t.add_argument("--save-every", type=int, default=10000, help="save latest + state every N steps (README 10000)")
    t.add_argument("--image-every", type=int, default=100, help="image grid every N steps (official 100)")
    t.add_argument("--log-every", type=int, default=50, help="train metrics every N steps (official 50)")
    t.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
    t.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=Command(f"{__package__}.train", "cmd_train"))


def _add_convert(sub: argparse._SubParsersAction) -> None:
    c = sub.add_parser("convert", help="convert official .pt checkpoints to safetensors")
    c.add_argument("src", nargs="+", help="official checkpoint(s): hyperstyle_ffhq.pt, faces_w_encoder.pt, ...")
    c.add_argument("--out", default=None, help="output folder (default: beside the source)")
    c.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=True,
                   help="replace an existing .safetensors (default yes)")
    c.set_defaults(func=_command("_cmd_convert"))


def _add_invert(sub: argparse._SubParsersAction) -> None:
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
    i.add_argument("--fast", action="store_true", help=FAST_HELP)
    _save_deltas_flag(i)
    i.set_defaults(func=_command("_cmd_invert"))


def _save_deltas_flag(q: argparse.ArgumentParser) -> None:
    q.add_argument("--save-deltas", choices=["float32", "float16", "bfloat16", "none"], default=None,
                   help="storage of _deltas.safetensors: float32 (exact; the default with float32 models), float16 "
                        "or bfloat16 (half the disk; renders from them differ slightly, see docs/cli.md), or none "
                        "(no deltas file: later edits and transfers need the inversion again)")


def _add_download(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("download", help="download official checkpoints by name and convert them into models/",
                       description="Download official checkpoints (resuming interrupted transfers, verifying size "
                                   "and sha256 where known) and convert them to safetensors in the models folder. "
                                   "Without internet access: --mirror URL (or $HYPERSTYLE_DOWNLOAD_BASE), or "
                                   "download the .pt by hand (--list shows where) and run `hyperstyle convert`.")
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
    d.add_argument("--list", action="store_true", help="list the known checkpoints, groups and their web pages")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_command("_cmd_download"))


# ------------------------------------------------------------------------------------ folder commands (runner)

def _folder_options(q: argparse.ArgumentParser, models: bool = True) -> None:
    """Options of every command that goes through the folder runner (run, align, edit, transfer)."""
    q.add_argument("--output", "--out", dest="output", default="output", help="output folder (default output/)")
    if models:
        q.add_argument("--models", default="models", help="models folder (default models/)")
        q.add_argument("--hyperstyle", default=None, help="HyperStyle model file (default MODELS/hyperstyle_ffhq)")
        q.add_argument("--w-encoder", default=None, help="W-encoder file (default MODELS/faces_w_encoder)")
        q.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N, mps")
        q.add_argument("--dtype", default=None, help="float32 (default), float16 or bfloat16 (GPU only)")
        q.add_argument("--iterations", type=int, default=5, help="refinement iterations (official default 5)")
        q.add_argument("--fast", action="store_true", help=FAST_HELP)
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


def _align_flags(q: argparse.ArgumentParser) -> None:
    q.add_argument("--align", action=argparse.BooleanOptionalAction, default=True,
                   help="FFHQ-align faces first (default); --no-align: inputs are aligned crops")
    q.add_argument("--paste", action=argparse.BooleanOptionalAction, default=True,
                   help="paste the faces back into the photos (with alignment; default yes)")


def _edit_flags(q: argparse.ArgumentParser, required: bool = False) -> None:
    q.add_argument("--edit", action="append", default=None, required=required,
                   help="InterFaceGAN edits NAME=FACTOR[,NAME=FACTOR...], e.g. age=+3,smile=-1 (direction files "
                        "NAME.safetensors or NAME.pt in --models); repeatable")


def _transfer_flags(q: argparse.ArgumentParser, required: bool = False) -> None:
    q.add_argument("--transfer", action="append", default=None, required=required,
                   help="generator for domain adaptation, e.g. toonify.safetensors (path or name in --models); "
                        "renders with the image's deltas on the official Toonify layers; repeatable")
    q.add_argument("--transfer-latent", choices=["restyle", "w"], default="restyle",
                   help="codes rendered by --transfer: restyle (official: ReStyle-e4e, needs "
                        "restyle_e4e_ffhq_encode.safetensors) or w (the W-encoder codes)")
    q.add_argument("--restyle", default=None, help="ReStyle-e4e file (default MODELS/restyle_e4e_ffhq_encode)")


def _add_run(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="align, invert, edit, transfer and paste back a whole folder (resumable)",
                       description="The whole chain on a folder, streamed in batches. Writes OUTPUT/manifest.jsonl "
                                   "(one line per input: ok, skipped or error with a reason) and per image "
                                   "<name>_aligned.png, _alignment.json, _inversion.png, _pasted.png, _<edit>.png, "
                                   "_<edit>_pasted.png, _<transfer>.png, _latent.safetensors, _deltas.safetensors. "
                                   "Re-running skips finished images.")
    given = r.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", nargs="+", help="input folder (or folders / image files)")
    given.add_argument("--input-list", default=None, help="text file of image paths, one per line (read in "
                                                          "groups: for millions of files)")
    _folder_options(r)
    _align_flags(r)
    _edit_flags(r)
    _transfer_flags(r)
    r.add_argument("--save-latents", action=argparse.BooleanOptionalAction, default=True,
                   help="write _latent and _deltas .safetensors (default yes; needed by edit/transfer later)")
    _save_deltas_flag(r)
    _engine_flags(r)
    r.set_defaults(func=_command("_cmd_run"))


def _engine_flags(q: argparse.ArgumentParser) -> None:
    """Where `run` does its work: here (embedded, default) or on Ray actors (run.ray_engine)."""
    q.add_argument("--engine", choices=["embedded", "ray"], default="embedded",
                   help="embedded (default: this process) or ray (a Ray cluster's actors; pip install -r "
                        "requirements-ray.txt); same outputs and manifest")
    q.add_argument("--address", default=None,
                   help="--engine ray: auto (the cluster of this machine) or ray://HOST:PORT (a remote head); "
                        "default: start Ray on this machine")
    q.add_argument("--actors", type=int, default=1, help="--engine ray: workers, each loading the models once")
    q.add_argument("--gpus-per-actor", type=float, default=0.0,
                   help="--engine ray: GPUs per actor (0: CPU actors; 0.5: two actors per GPU)")
    q.add_argument("--cpus-per-actor", type=float, default=1.0, help="--engine ray: CPUs per actor")


def _add_align(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("align", help="FFHQ-align the faces in photos (dlib): <name>_aligned.png + _alignment.json")
    a.add_argument("inputs", nargs="+", help="photos or folders")
    _folder_options(a, models=False)
    a.set_defaults(func=_command("_cmd_align"))


def _add_edit(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("edit", help="InterFaceGAN edits of photos, or of saved _latent/_deltas files",
                       description="Inputs are photos (inverted first; aligned unless --no-align) or "
                                   "*_latent.safetensors files / a run's output folder (re-rendered with their "
                                   "_deltas). Writes <name>_<edit>.png (and _<edit>_pasted.png for aligned photos).")
    e.add_argument("inputs", nargs="+", help="photos, folders, or *_latent.safetensors files")
    _folder_options(e)
    _align_flags(e)
    _edit_flags(e, required=True)
    e.set_defaults(func=_command("_cmd_edit"))


def _add_transfer(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("transfer", help="domain adaptation (e.g. Toonify) of photos or saved _latent/_deltas files",
                       description="Renders each image's latent with a fine-tuned generator, keeping its HyperStyle "
                                   "deltas on the official Toonify layers. Writes <name>_<generator>.png.")
    t.add_argument("inputs", nargs="+", help="photos, folders, or *_latent.safetensors files")
    _folder_options(t)
    _align_flags(t)
    _transfer_flags(t, required=True)
    t.set_defaults(func=_command("_cmd_transfer"))


# ------------------------------------------------------------------------------- editing suite (cli/editing.py)

def add_edit_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the editing sub-commands; their functions live in cli/editing.py."""
    g = sub.add_parser("ganspace", help="compute GANSpace PCA directions for a generator (no file needed)")
    g.add_argument("generator", help="converted generator .safetensors")
    g.add_argument("--out", required=True, help="output directions .safetensors")
    g.add_argument("--samples", type=int, default=100_000, help="random z samples")
    g.add_argument("--components", type=int, default=80, help="components kept")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="auto")
    g.set_defaults(func=_editing_command("_cmd_ganspace"))

    s = sub.add_parser("styleclip-stats", help="S statistics: convert the official S_mean_std, or compute them "
                                               "for a generator")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--s-mean-std", help="the official S_mean_std pickle (read with a numpy-only unpickler)")
    src.add_argument("--generator", help="compute for this converted generator instead")
    s.add_argument("--out", required=True, help="output .safetensors")
    s.add_argument("--samples", type=int, default=100_000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--device", default="auto")
    s.set_defaults(func=_editing_command("_cmd_styleclip_stats"))

    d = sub.add_parser("styleclip-directions", help="per-channel CLIP directions (the official fs3) for a generator")
    d.add_argument("generator", help="converted generator .safetensors")
    d.add_argument("--clip", required=True, help="CLIP weights (ViT-B-32.pt or converted .safetensors)")
    d.add_argument("--out", required=True, help="output .safetensors")
    d.add_argument("--samples", type=int, default=100, help="latents per channel (official 100)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default="auto")
    d.set_defaults(func=_editing_command("_cmd_styleclip_directions"))

    c = sub.add_parser("clip-convert", help="convert a CLIP checkpoint (e.g. ViT-B-32.pt) to safetensors")
    c.add_argument("src")
    c.add_argument("--out", default=None)
    c.set_defaults(func=_editing_command("_cmd_clip_convert"))

    f = sub.add_parser("fit-direction", help="fit an InterFaceGAN direction from two folders of aligned photos")
    f.add_argument("--positive", required=True, help="folder of images WITH the attribute")
    f.add_argument("--negative", required=True, help="folder of images WITHOUT it")
    f.add_argument("--out", required=True, help="output direction .safetensors (Load Direction reads it)")
    f.add_argument("--models", default="models", help="folder with hyperstyle_ffhq / faces_w_encoder")
    f.add_argument("--method", choices=("svm", "logistic"), default="svm")
    f.add_argument("--device", default="auto")
    f.set_defaults(func=_editing_command("_cmd_fit_direction"))

    a = sub.add_parser("animate", help="interpolate between two saved inversions and write a GIF/WebP")
    a.add_argument("--generator", required=True, help="HyperStyle model or generator .safetensors")
    a.add_argument("--latent-a", required=True)
    a.add_argument("--latent-b", required=True)
    a.add_argument("--deltas-a", default=None)
    a.add_argument("--deltas-b", default=None)
    a.add_argument("--frames", type=int, default=24)
    a.add_argument("--fps", type=float, default=12.0)
    a.add_argument("--out", required=True, help="output .gif or .webp")
    a.add_argument("--device", default="auto")
    a.set_defaults(func=_editing_command("_cmd_animate"))


BENCH_DESCRIPTION = """Benchmark: per-stage times and peak memory of a full HyperStyle inversion (prints numbers).

    hyperstyle bench                        # FFHQ 1024 config, recipe weights, batch 1 and 4
    hyperstyle bench --models models/       # the user's converted hyperstyle_ffhq + faces_w_encoder

Recipe weights come from ../shared/fixtures/official/recipe.py (override with --recipe)."""


def build_bench_parser(prog: str, default_recipe: str) -> argparse.ArgumentParser:
    """The benchmark's own parser (`hyperstyle bench ...` hands it everything after `bench`)."""
    p = argparse.ArgumentParser(prog=prog, description=BENCH_DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=1024, choices=(256, 1024), help="FFHQ config size (recipe weights)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 4], help="batch sizes to time")
    p.add_argument("--iters", type=int, default=5, help="refinement iterations")
    p.add_argument("--mode", nargs="+", default=["exact", "fast"], choices=("exact", "fast"),
                   help="inversion modes to time (default both; fast = invert(..., fast=True))")
    p.add_argument("--repeats", type=int, default=1, help="timed runs per batch size")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, mps")
    p.add_argument("--dtype", default="float32", help="float32, float16, bfloat16 (half precision on GPU only)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--recipe", default=default_recipe, help="path of the shared recipe.py")
    p.add_argument("--models", default=None, help="folder with converted hyperstyle_ffhq / faces_w_encoder files")
    return p


def default_recipe() -> str:
    """../shared/fixtures/official/recipe.py beside the checkout (the tests' deterministic weights)."""
    return str(Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "official" / "recipe.py")
