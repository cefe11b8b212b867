"""Which prediction goes with which ground truth, and how a metric reads a picture.

Pairs come from two folders (the official scripts pair files by name: pred/x.png with gt/x.png) or from an
inversion run's output folder (`hyperstyle run` / `invert`: each `<out>_inversion.png` with the aligned crop it was
made from, as the run's manifest.jsonl records them). Files that cannot be paired are listed with the reason, never
fatal. Pictures are read as the official calc_losses_on_images.py transform does: RGB, Resize((256, 256)) on the
PIL image (bilinear), to [-1, 1].
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..io.folders import IMAGE_PATTERN, escape_undecodable, list_folder
from ..io.images import DEFAULT_MAX_PIXELS, pil_to_input, read_rgb
from ..io.run_folder import MANIFEST_NAME, ManifestRecord, is_plain_name, read_manifest

__all__ = ["METRIC_SIZE", "ImagePair", "Pairing", "pair_folders", "pair_run", "read_metric_image",
           "pixels_to_metric_input"]

METRIC_SIZE = 256       # calc_losses_on_images.py: transforms.Resize((256, 256)) before every metric


@dataclass(frozen=True)
class ImagePair:
    """One prediction and its ground truth; `name` is what the reports call it (the prediction's file name)."""
    name: str
    pred: Path
    gt: Path


@dataclass
class Pairing:
    """The pairs to score, and (name, reason) for every file that could not be paired."""
    pairs: list[ImagePair] = field(default_factory=list)
    unpaired: list[tuple[str, str]] = field(default_factory=list)


def _images_by_name(folder: Path) -> dict[str, Path]:
    return {p.name: p for p in list_folder(folder, IMAGE_PATTERN)}


def _same_stem(name: str, candidates: dict[str, Path]) -> list[str]:
    stem = Path(name).stem.lower()
    return [n for n in candidates if Path(n).stem.lower() == stem]


def pair_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike) -> Pairing:
    """Pair the images of `pred_dir` with the ground truths of `gt_dir` by file name.

    The same name pairs first (as the official scripts); otherwise a single ground truth with the same stem (a
    prediction saved as x.png for x.jpg). Predictions without a ground truth, ambiguous stems and ground truths
    without a prediction are listed in `unpaired`.
    Raises:
        FileNotFoundError / ValueError: a folder is missing or is not a folder.
    """
    preds, gts = _images_by_name(Path(pred_dir)), _images_by_name(Path(gt_dir))
    pairing, used = Pairing(), set()
    for name, path in preds.items():
        shown = escape_undecodable(name)
        if name in gts and name not in used:
            match = name
        else:
            stems = [n for n in _same_stem(name, gts) if n not in used and n not in preds]
            if len(stems) > 1:
                pairing.unpaired.append((shown, f"several ground truths share its stem ({', '.join(sorted(stems))})"
                                                f"; rename them so one has the prediction's name"))
                continue
            if not stems:
                pairing.unpaired.append((shown, f"no ground truth of that name in {gt_dir}"))
                continue
            match = stems[0]
        used.add(match)
        pairing.pairs.append(ImagePair(shown, path, gts[match]))
    for name in gts:
        if name not in used:
            pairing.unpaired.append((escape_undecodable(name), f"ground truth without a prediction in {pred_dir}"))
    return pairing


def _run_pair(record: ManifestRecord, run_dir: Path) -> ImagePair | str:
    """The pair of one manifest record, or why it has none."""
    if record.get("status") != "ok":
        return f"the run recorded it as {record.get('status')}: {record.get('reason') or record.get('code')}"
    kinds = record.get("kinds") if isinstance(record.get("kinds"), dict) else {}
    by_kind = {kind: name for name, kind in kinds.items() if is_plain_name(name)}
    if "inversion" not in by_kind:
        return "the run wrote no inversion for it; run again with the inversion product"
    if "aligned" in by_kind:
        gt = run_dir / by_kind["aligned"]
    elif record.get("align") is False and isinstance(record.get("source"), str):
        gt = Path(record["source"])         # --no-align: the input photo itself was the aligned crop
    else:
        return "the run did not save its aligned crop; run again with the aligned product (or compare --pred/--gt)"
    pred = run_dir / by_kind["inversion"]
    for path, what in ((pred, "inversion"), (gt, "aligned input")):
        if not path.is_file():
            return f"its {what} {escape_undecodable(str(path))} is missing"
    return ImagePair(escape_undecodable(pred.name), pred, gt)


def pair_run(run_dir: str | os.PathLike) -> Pairing:
    """Pair each `<out>_inversion.png` of an inversion run's output folder with its aligned input, as the run's
    manifest.jsonl records them (the last record per input file).

    Raises:
        FileNotFoundError: the folder or its manifest.jsonl is missing.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist; pass the --output folder of `hyperstyle run`")
    manifest = run_dir / MANIFEST_NAME
    if not manifest.is_file():
        raise FileNotFoundError(f"{run_dir} has no {MANIFEST_NAME}, so it is not the output folder of `hyperstyle "
                                f"run`; compare two folders with --pred and --gt instead")
    pairing = Pairing()
    for key, record in read_manifest(manifest).items():
        found = _run_pair(record, run_dir)
        if isinstance(found, ImagePair):
            pairing.pairs.append(found)
        else:
            pairing.unpaired.append((escape_undecodable(key), found))
    return pairing


def read_metric_image(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """An image file as the metrics see it: [1, 3, 256, 256] in [-1, 1] (RGB, bilinear resize as the official
    transform). Raises FileNotFoundError / ValueError (io.images.ImageReadError) for a file that is no picture."""
    return pil_to_input(read_rgb(path, max_pixels)[0], METRIC_SIZE, METRIC_SIZE)


def pixels_to_metric_input(image: torch.Tensor) -> torch.Tensor:
    """A ComfyUI IMAGE row [H, W, 3] in [0, 1] -> [1, 3, 256, 256] in [-1, 1], quantised to 8 bits first as a saved
    PNG would be, so the numbers equal those of `hyperstyle evaluate` on the saved files."""
    arr = np.clip(np.round(image.detach().float().cpu().numpy() * 255.0), 0, 255).astype(np.uint8)
    return pil_to_input(Image.fromarray(arr, "RGB"), METRIC_SIZE, METRIC_SIZE)
