"""Alignment and paste-back of whole batches: which crop came from which photo, and putting every face back.

A batch of photos gives any number of aligned crops ("all" faces, skipped photos); `AlignedBatch` records, for each
crop, its photo's index and AlignmentInfo, so faces rendered from the crops (possibly k per crop, e.g. an edit
sweep) go back into the right photos.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .alignment import FaceChoice, OnNoFace, align_image
from .arrays import as_float_rgb
from .info import AlignmentInfo
from .paste_back import paste_back


@dataclass(frozen=True)
class AlignedBatch:
    """For each aligned crop, in order: (index of its source photo, AlignmentInfo, or None for a pass-through crop,
    which has nothing to paste back). `source_count` is the number of photos that were aligned."""
    entries: tuple[tuple[int, AlignmentInfo | None], ...]
    source_count: int

    def __len__(self) -> int:
        return len(self.entries)


def align_batch(photos: Sequence[Any], output_size: int = 256, face: FaceChoice = "largest",
                on_no_face: OnNoFace = "error", on_photo: Callable[[], None] | None = None,
                ) -> tuple[list[np.ndarray], AlignedBatch]:
    """`align_image` on every photo ([H, W, 3], see there). Returns the crops ([S, S, 3] uint8, photo-major) and
    their AlignedBatch. Raises ValueError when no photo gave a crop. on_photo() is called after each photo."""
    crops, entries = [], []
    for i, photo in enumerate(photos):
        for crop, info in align_image(photo, output_size, face, on_no_face, f"image {i + 1} of {len(photos)}",
                                      image_index=i):
            crops.append(crop)
            entries.append((i, info))
        if on_photo is not None:
            on_photo()
    if not crops:
        raise ValueError(f"No face found in any of the {len(photos)} image(s), so nothing was aligned. Use "
                         f"photos with a visible face, or set on_no_face to 'passthrough'.")
    return crops, AlignedBatch(tuple(entries), len(photos))


def paste_back_batch(photos: Sequence[Any], faces: Sequence[Any], alignment: AlignedBatch, feather: float = 0.1,
                     on_image: Callable[[], None] | None = None) -> list[np.ndarray]:
    """Paste faces rendered from an AlignedBatch's crops back into the photos that were aligned.

    Args:
        photos: the aligned photos, [H, W, 3] each (as `paste_back` takes them); as many as alignment.source_count.
        faces: k faces per crop, crop-major (crop 0's k faces first), e.g. k factors of an edit sweep.
        alignment: from `align_batch` (or the Align Face node).
        feather: see `paste_back`.
    Returns:
        photo-major list of source_count * k composites [H, W, 3] float32 in [0, 1]: photo p with the faces of
        sweep step j of all its crops. Photos without a pasteable crop are returned as they are (as float).
    """
    if len(photos) != alignment.source_count:
        raise ValueError(f"got {len(photos)} original photo(s) but the alignment was made from "
                         f"{alignment.source_count}; connect the same images that went into Align Face")
    n = len(alignment)
    if len(faces) % n:
        raise ValueError(f"got {len(faces)} faces for {n} aligned crop(s); give one face per crop (or the same "
                         f"number per crop, e.g. from an edit sweep)")
    per_crop = len(faces) // n
    out = []
    for p, photo in enumerate(photos):
        for step in range(per_crop):
            canvas = as_float_rgb(photo, f"photo {p + 1} of {len(photos)}")
            for k, (source_index, info) in enumerate(alignment.entries):
                if source_index == p and info is not None:
                    canvas = paste_back(canvas, faces[k * per_crop + step], info, feather)
            out.append(np.ascontiguousarray(canvas, dtype=np.float32))
            if on_image is not None:
                on_image()
    return out
