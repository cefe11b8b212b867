"""Training data: folders of aligned images, read lazily, with the official transforms per domain.

configs/transforms_config.py: faces and other domains (EncodeTransforms) resize to 256x256, cars
(CarsEncodeTransforms) to 192x256 (H x W); training adds a horizontal flip with probability 0.5; then ToTensor and
Normalize(0.5, 0.5) -> [-1, 1]. The input and the target are the same picture (ImagesDataset with no source transform).

Unlike the official DataLoader(shuffle=True), the order and the flips come from a seeded generator per epoch, so a
run can be resumed at any batch with the same data (`EpochOrder`).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from PIL import Image, UnidentifiedImageError

from ..io.folders import list_folder
from ..io.images import pil_to_input, read_rgb

log = logging.getLogger(__name__)

DOMAINS = ("faces", "cars", "other")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
ALIGNED_SUFFIX = "_aligned.png"       # what `hyperstyle align` writes beside other outputs
MAX_RETRIES = 10                      # a file that fails to decode is replaced by one of the next files


@dataclass(frozen=True)
class DomainTransform:
    """Resize target (H x W) and whether training flips."""
    height: int
    width: int
    flip: bool = True


def domain_transform(domain: str) -> DomainTransform:
    """The official train transform of a domain: faces / other 256x256, cars 192x256; all flip."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; use one of {', '.join(DOMAINS)}")
    return DomainTransform(192, 256) if domain == "cars" else DomainTransform(256, 256)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder, sorted by name. The output folder of `hyperstyle align` (it holds *_aligned.png
    beside other results) gives its aligned faces only. Unreadable files are skipped with a warning.

    Raises:
        FileNotFoundError / ValueError: no such folder, or no usable image in it.
    """
    files = list_folder(folder)
    aligned = [p for p in files if p.name.endswith(ALIGNED_SUFFIX)]
    candidates = aligned or [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    usable = []
    for path in candidates:
        problem = _header_problem(path)
        if problem:
            log.warning("skipping %s: %s", path, problem)
        else:
            usable.append(path)
    if not usable:
        found = f"{len(candidates)} image files, none readable" if candidates else f"{len(files)} files, no images"
        raise ValueError(f"no usable training images in {folder} ({found}); put aligned images ("
                         f"{', '.join(IMAGE_SUFFIXES)}) there, e.g. the output folder of `hyperstyle align`")
    return usable


def _header_problem(path: Path) -> str | None:
    """Why a file cannot be an image, from its header alone (cheap: pixels are read when the batch needs them)."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with Image.open(path) as img:
            width, height = img.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError) as e:
        return f"not a readable image ({e})"
    if min(width, height) < 1:
        return f"has no pixels ({width}x{height})"
    return None


class ImageFolderDataset(torch.utils.data.Dataset):
    """Lazily read images; item (index, flip) -> [3, H, W] float32 in [-1, 1]."""

    def __init__(self, paths: list[Path], transform: DomainTransform):
        if not paths:
            raise ValueError("an image dataset needs at least one image")
        self.paths = list(paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, bool]) -> torch.Tensor:
        index, flip = item
        for attempt in range(MAX_RETRIES):
            path = self.paths[(index + attempt) % len(self.paths)]
            try:
                image = pil_to_input(read_rgb(path)[0], self.transform.height, self.transform.width)[0]
            except (ValueError, OSError) as e:      # damaged after listing: use the next file, say so
                log.warning("skipping %s for this batch: %s", path, e)
                continue
            # torchvision's RandomHorizontalFlip after Resize: the same pixels as flipping the tensor
            return image.flip(-1) if flip else image
        raise ValueError(f"{MAX_RETRIES} images in a row could not be read, from {self.paths[index]} on; check the "
                         f"training folder")


class EpochOrder:
    """Which images form batch b of epoch e, and which are flipped: a seeded permutation per epoch, the last
    incomplete batch dropped (as the official DataLoader(shuffle=True, drop_last=True))."""

    def __init__(self, n_images: int, batch_size: int, seed: int, flip: bool):
        if batch_size < 1:
            raise ValueError(f"batch size must be at least 1, got {batch_size}")
        if n_images < batch_size:
            raise ValueError(f"{n_images} training images are fewer than one batch of {batch_size}; add images "
                             f"or lower --batch-size")
        self.n_images, self.batch_size, self.seed, self.flip = n_images, batch_size, seed, flip

    @property
    def batches_per_epoch(self) -> int:
        return self.n_images // self.batch_size

    def epoch(self, epoch: int) -> list[list[tuple[int, bool]]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n_images, generator=gen).tolist()
        flips = (torch.rand(self.n_images, generator=gen) < 0.5).tolist() if self.flip else [False] * self.n_images
        items = list(zip(order, flips))
        return [items[i * self.batch_size:(i + 1) * self.batch_size] for i in range(self.batches_per_epoch)]

    def iterate(self, epoch: int, batch: int) -> Iterator[tuple[int, int, list[tuple[int, bool]]]]:
        """(epoch, batch, items) from the given position on, forever."""
        while True:
            for b, items in enumerate(self.epoch(epoch)):
                if b >= batch:
                    yield epoch, b, items
            epoch, batch = epoch + 1, 0


def load_batch(dataset: ImageFolderDataset, items: list[tuple[int, bool]]) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] for the given (index, flip) items."""
    return torch.stack([dataset[item] for item in items])


def validation_batches(n_images: int, batch_size: int, max_batches: int | None = None) -> list[list[tuple[int, bool]]]:
    """The official test loader: in order, no flip, the last incomplete batch dropped (at least one batch)."""
    size = min(batch_size, n_images)
    batches = [[(i, False) for i in range(b * size, (b + 1) * size)] for b in range(n_images // size)]
    return batches if max_batches is None else batches[:max_batches]
