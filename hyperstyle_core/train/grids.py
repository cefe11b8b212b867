"""Image grids of training progress: one row per sample, columns input | W-inversion | iteration 1..n."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from PIL import Image

from ..io.images import save_png, tensor_to_pil

DISPLAY_COUNT = 2       # official parse_and_log_images shows two samples per batch


def grid_image(inputs: torch.Tensor, w_inversion: torch.Tensor, iterations: list[torch.Tensor],
               display_count: int = DISPLAY_COUNT) -> Image.Image:
    """inputs, w_inversion and each iteration: [B, 3, H, W] in [-1, 1] of one size. Returns a PIL RGB grid."""
    rows = min(display_count, inputs.shape[0])
    columns = [inputs, w_inversion, *iterations]
    for i, t in enumerate(columns):
        if t.shape[1:] != inputs.shape[1:]:
            raise ValueError(f"grid column {i} has shape {list(t.shape[1:])}, expected {list(inputs.shape[1:])}")
    height, width = inputs.shape[2], inputs.shape[3]
    grid = Image.new("RGB", (width * len(columns), height * rows), (255, 255, 255))
    for r in range(rows):
        for c, t in enumerate(columns):
            grid.paste(tensor_to_pil(t[r]), (c * width, r * height))
    return grid


def save_grid(path: str | os.PathLike, inputs: torch.Tensor, w_inversion: torch.Tensor,
              iterations: list[torch.Tensor]) -> Path:
    """Write `grid_image(...)` as a PNG (atomically)."""
    return save_png(grid_image(inputs, w_inversion, iterations), path)
