"""Editing-suite sub-commands: GANSpace directions, StyleCLIP statistics / channel directions / CLIP conversion,
fitting an InterFaceGAN direction from two folders of photos, and latent interpolation animations.

Their parsers are in cli/parser.py (torch-free; `add_edit_commands` registers them); every command returns an
exit code.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from ..deltas import WeightDeltas
from ..editing import styleclip as sc
from ..editing.animation import images_to_frames, interpolate, save_animation
from ..editing.ganspace import compute_ganspace, save_ganspace
from ..editing.interfacegan import fit_direction
from ..inversion import generate, w_encode
from ..io.checkpoints import load
from ..io.directions import save_direction
from ..io.folders import IMAGE_PATTERN, list_folder, printable
from ..io.images import open_rgb, pil_to_input
from ..io.latents import load_latent
from .parser import add_edit_parsers


def _cmd_ganspace(args) -> int:
    generator = load(args.generator, args.device, expect="stylegan2")
    with tqdm(total=args.samples, unit="z", desc="ganspace") as bar:
        directions = compute_ganspace(generator, n_samples=args.samples, n_components=args.components,
                                      seed=args.seed, progress=lambda done, total: bar.update(done - bar.n))
    out = save_ganspace(directions, args.out)
    print(f"{args.generator} -> {out} ({directions.n_components} components)")
    return 0


def _cmd_styleclip_stats(args) -> int:
    if args.generator:
        generator = load(args.generator, args.device, expect="stylegan2")
        means, stds = sc.compute_s_stats(generator, n_samples=args.samples, seed=args.seed)
        names = generator.layer_names
    else:
        means, stds = sc.read_s_mean_std(args.s_mean_std)
        names = None
    out = sc.save_s_stats(args.out, means, stds, names)
    print(f"S statistics ({len(stds)} layers) -> {out}")
    return 0


def _cmd_styleclip_directions(args) -> int:
    generator = load(args.generator, args.device, expect="stylegan2")
    clip_model = sc.load_clip(args.clip, device=generator.device)
    with tqdm(total=1, unit="batch", desc="fs3") as bar:
        def progress(done, total):
            bar.total = total
            bar.update(done - bar.n)
        delta_i_c = sc.compute_channel_directions(generator, clip_model, args.samples, seed=args.seed,
                                                  progress=progress)
    out = sc.save_generator_channel_directions(args.out, delta_i_c, generator)
    print(f"channel directions {list(delta_i_c.shape)} -> {out}")
    return 0


def _cmd_clip_convert(args) -> int:
    print(f"{args.src} -> {sc.convert_clip_to_safetensors(args.src, args.out)}")
    return 0


def _encode_folder(folder: Path, hs, we) -> tuple[list, list[str]]:
    """W codes of every readable image in `folder` (assumed FFHQ-aligned); skipped files are reported."""
    latents, skipped = [], []
    files = list_folder(folder, IMAGE_PATTERN)
    if not files:
        raise ValueError(f"{folder} has no images ({IMAGE_PATTERN})")
    generator = hs.generator
    for f in files:
        try:
            x = pil_to_input(open_rgb(f), hs.input_spec.height, hs.input_spec.width)
        except (ValueError, FileNotFoundError) as e:     # a bad file or a broken link is skipped, not fatal
            skipped.append(f"{f.name}: {e}")
            continue
        with torch.no_grad():
            latents.append(w_encode(we, x.to(generator.device, generator.dtype), hs.latent_avg).cpu())
    return latents, skipped


def _cmd_fit_direction(args) -> int:
    models = Path(args.models)
    hs = load(models / "hyperstyle_ffhq.safetensors", args.device, expect="hyperstyle")
    we = load(models / "faces_w_encoder.safetensors", args.device, expect="w_encoder")
    pos, skipped_pos = _encode_folder(Path(args.positive), hs, we)
    neg, skipped_neg = _encode_folder(Path(args.negative), hs, we)
    for line in skipped_pos + skipped_neg:
        print(f"skipped {printable(line)}", file=sys.stderr)
    latents = torch.cat(pos + neg)
    labels = [1] * len(pos) + [0] * len(neg)
    # W-encoder codes repeat one W vector: fit in W (entry 0) so the direction applies to every layer.
    direction = fit_direction(latents[:, 0], labels, method=args.method, name=Path(args.out).stem)
    out = save_direction(direction, args.out)
    print(f"direction from {len(pos)} positive / {len(neg)} negative images -> {out}")
    return 0


def _cmd_animate(args) -> int:
    generator = load(args.generator, args.device, expect=None)
    generator = getattr(generator, "generator", generator)
    latents = [load_latent(p) for p in (args.latent_a, args.latent_b)]
    deltas = [WeightDeltas.load(p) if p else None for p in (args.deltas_a, args.deltas_b)]
    frames_latent, frames_deltas = interpolate(latents[0][:1], latents[1][:1], deltas[0], deltas[1], args.frames)
    images = [generate(generator, frames_latent[i:i + 1], None if frames_deltas is None else frames_deltas.index(i))
              for i in range(args.frames)]
    frames = images_to_frames(torch.cat(images))
    print(f"{args.frames} frames -> {save_animation(frames, args.out, fps=args.fps)}")
    return 0


def add_edit_commands(sub: argparse._SubParsersAction) -> None:
    """Register the editing sub-commands on the main CLI's sub-parsers (defined in cli/parser.py, torch-free)."""
    add_edit_parsers(sub)
