"""What the folder-runner tests share: tiny run models, synthetic pictures, the manifest's records, the files a
run leaves. (Imported by the test files of this folder, which pytest puts on sys.path.)"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from conftest import SHARED

PHOTOS = SHARED / "data" / "photos"
FACE = PHOTOS / "aligned_bezos.jpg"     # 512x512 aligned portrait: dlib finds it quickly


def synthetic_images(folder: Path, n: int, size: int = 96, start: int = 0) -> list[str]:
    """n smooth random pictures (aligned crops for --no-align runs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(start)
    names = []
    for i in range(start, start + n):
        small = rng.integers(0, 255, (6, 6, 3), dtype=np.uint8)
        names.append(f"img_{i:03d}.png")
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / names[-1])
    return names


def records(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / "manifest.jsonl").read_text().splitlines() if line.strip()]


def visible_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")} - {"manifest.jsonl", "summary.json"}


def tiny_args(models: Path, *extra: str) -> list[str]:
    return ["--models", str(models), "--device", "cpu", "--iterations", "1", "--quiet", *extra]
