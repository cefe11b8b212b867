"""Score every pair, summarise each metric as mean ± std (the official scripts' np.mean / np.std, NaN skipped) and
write the per-image CSV and the JSON summary atomically.

    result = evaluate_folders("results/", "gt/", models_dir="models/")      # or evaluate_run("output/")
    print(format_summary(result)); write_reports(result, "metrics/")
"""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from ..io.files import atomic_path
from .images import ImagePair, Pairing, pair_folders, pair_run, read_metric_image
from .scores import MetricNetworks, is_missing, load_metric_networks, parse_metrics, score_pair

__all__ = ["MetricSummary", "Evaluation", "evaluate_pairs", "evaluate_tensors", "evaluate_folders", "evaluate_run",
           "summarise", "format_summary", "format_scores", "summary_dict", "write_reports", "SCORES_NAME",
           "SUMMARY_NAME"]

SCORES_NAME = "scores.csv"
SUMMARY_NAME = "summary.json"
MAX_LISTED = 20         # files listed per kind of problem in the printed summary (summary.json lists them all)
# How the official scripts print each metric: calc_losses_on_images.py 5 decimals, calc_id_loss_parallel.py 2.
DECIMALS = {"l2": 5, "lpips": 5, "ms_ssim": 5, "id": 2}


@dataclass(frozen=True)
class MetricSummary:
    """One metric over the scored images: mean and population std (np.std) of the finite scores."""
    mean: float
    std: float
    count: int          # images with a finite score
    nan: int = 0        # images whose score was NaN (left out of mean and std, as the official script does)


@dataclass
class Evaluation:
    """Everything an evaluation found."""
    metrics: tuple[str, ...]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)     # pair name -> metric -> score
    pairs: dict[str, ImagePair] = field(default_factory=dict)             # pair name -> its files
    summary: dict[str, MetricSummary] = field(default_factory=dict)
    unpaired: list[tuple[str, str]] = field(default_factory=list)         # (file name, why it was not paired)
    unreadable: list[tuple[str, str]] = field(default_factory=list)       # (pair name, why it could not be read)


def summarise(values: Iterable[float]) -> MetricSummary:
    """Mean ± std of the finite values (NaN skipped and counted); NaN mean / std when none is finite."""
    values = list(values)
    finite = [v for v in values if not is_missing(v)]
    if not finite:
        return MetricSummary(float("nan"), float("nan"), 0, len(values))
    return MetricSummary(float(np.mean(finite)), float(np.std(finite)), len(finite), len(values) - len(finite))


def evaluate_pairs(pairing: Pairing, metrics: Iterable[str], networks: MetricNetworks | None = None,
                   on_pair: Callable[[], None] | None = None) -> Evaluation:
    """Score every pair of `pairing`. A file that cannot be read is listed in `unreadable`, never fatal.

    Raises:
        ValueError: nothing could be paired.
    """
    metrics = parse_metrics(metrics)
    if not pairing.pairs:
        listed = "; ".join(f"{name}: {why}" for name, why in pairing.unpaired[:5])
        raise ValueError(f"no prediction could be paired with a ground truth ({len(pairing.unpaired)} file(s) "
                         f"unpaired{': ' + listed if listed else ''}); predictions and ground truths are paired by "
                         f"file name")
    result = Evaluation(metrics, unpaired=list(pairing.unpaired))
    for pair in pairing.pairs:
        try:
            pred, gt = read_metric_image(pair.pred), read_metric_image(pair.gt)
        except (ValueError, FileNotFoundError) as e:
            result.unreadable.append((pair.name, str(e)))
        else:
            result.scores[pair.name] = score_pair(pred, gt, metrics, networks)
            result.pairs[pair.name] = pair
        if on_pair is not None:
            on_pair()
    result.summary = {m: summarise(s[m] for s in result.scores.values()) for m in metrics}
    return result


def evaluate_tensors(preds: Sequence[torch.Tensor], gts: Sequence[torch.Tensor], names: Sequence[str],
                     metrics: Iterable[str], networks: MetricNetworks | None = None,
                     on_pair: Callable[[], None] | None = None) -> Evaluation:
    """Score images already read (`read_metric_image` / `pixels_to_metric_input`): preds[i] against gts[i], each
    [1, 3, 256, 256] in [-1, 1], reported under names[i]. Raises ValueError for lists of different lengths."""
    metrics = parse_metrics(metrics)
    if not (len(preds) == len(gts) == len(names)) or not preds:
        raise ValueError(f"need as many ground truths as predictions (and at least one): got {len(preds)} "
                         f"predictions, {len(gts)} ground truths, {len(names)} names")
    result = Evaluation(metrics)
    for pred, gt, name in zip(preds, gts, names):
        result.scores[name] = score_pair(pred, gt, metrics, networks)
        if on_pair is not None:
            on_pair()
    result.summary = {m: summarise(s[m] for s in result.scores.values()) for m in metrics}
    return result


def evaluate_folders(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, models_dir: str | os.PathLike = "models",
                     metrics: Iterable[str] = ("l2", "lpips", "id", "ms_ssim"),
                     device: str | torch.device = "cpu", on_pair: Callable[[], None] | None = None) -> Evaluation:
    """Score the predictions of `pred_dir` against the same-named ground truths of `gt_dir` (see pair_folders).
    Raises FileNotFoundError for a missing folder or metric network (with the command that gets it)."""
    metrics = parse_metrics(metrics)
    pairing = pair_folders(pred_dir, gt_dir)
    return evaluate_pairs(pairing, metrics, load_metric_networks(metrics, models_dir, device), on_pair)


def evaluate_run(run_dir: str | os.PathLike, models_dir: str | os.PathLike = "models",
                 metrics: Iterable[str] = ("l2", "lpips", "id", "ms_ssim"),
                 device: str | torch.device = "cpu", on_pair: Callable[[], None] | None = None) -> Evaluation:
    """Score each inversion of a `hyperstyle run` output folder against its aligned input (see pair_run)."""
    metrics = parse_metrics(metrics)
    pairing = pair_run(run_dir)
    return evaluate_pairs(pairing, metrics, load_metric_networks(metrics, models_dir, device), on_pair)


def _format_number(value: float, decimals: int) -> str:
    return "nan" if is_missing(value) else f"{value:.{decimals}f}"


def format_scores(result: Evaluation) -> str:
    """One line per scored image: 'name: l2 0.00350, lpips 0.00473, id 1.00, ms_ssim 0.89648'."""
    return "\n".join(f"{name}: " + ", ".join(f"{m} {_format_number(v, DECIMALS[m])}" for m, v in scores.items())
                     for name, scores in result.scores.items())


def format_summary(result: Evaluation, files: bool = True) -> str:
    """One line per metric, as the official scripts print them ('Average loss is 0.01234+-0.00567'), plus (with
    `files`) the counts of scored, unpaired and unreadable files and why each was left out."""
    lines = []
    for metric, s in result.summary.items():
        d = DECIMALS[metric]
        nan = f", {s.nan} NaN left out" if s.nan else ""
        lines.append(f"{metric}: {_format_number(s.mean, d)}+-{_format_number(s.std, d)} (n={s.count}{nan})")
    if not files:
        return "\n".join(lines)
    lines.append(f"{len(result.scores)} pair(s) scored, {len(result.unpaired)} file(s) unpaired, "
                 f"{len(result.unreadable)} unreadable")
    for what, listed in (("unpaired", result.unpaired), ("unreadable", result.unreadable)):
        lines += [f"  {what} {name}: {why}" for name, why in listed[:MAX_LISTED]]
        if len(listed) > MAX_LISTED:
            lines.append(f"  ... {len(listed) - MAX_LISTED} more {what} (all listed in {SUMMARY_NAME})")
    return "\n".join(lines)


def _json_number(value: float) -> float | None:
    return None if is_missing(value) else value         # JSON has no NaN


def summary_dict(result: Evaluation) -> dict:
    """The JSON summary: per metric mean, std, count, nan; the unpaired and unreadable files."""
    return {
        "metrics": {m: {"mean": _json_number(s.mean), "std": _json_number(s.std), "count": s.count, "nan": s.nan}
                    for m, s in result.summary.items()},
        "pairs": len(result.scores),
        "unpaired": [{"file": name, "reason": why} for name, why in result.unpaired],
        "unreadable": [{"file": name, "reason": why} for name, why in result.unreadable],
    }


def write_reports(result: Evaluation, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write OUT/scores.csv (one row per scored pair: name, pred, gt, the metrics) and OUT/summary.json, each
    atomically (a killed run leaves the previous file or none). Returns their paths."""
    out_dir = Path(out_dir)
    scores_path, summary_path = out_dir / SCORES_NAME, out_dir / SUMMARY_NAME
    with atomic_path(scores_path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "pred", "gt", *result.metrics])
        for name, scores in result.scores.items():
            pair = result.pairs[name]
            writer.writerow([name, str(pair.pred), str(pair.gt), *(repr(scores[m]) for m in result.metrics)])
    with atomic_path(summary_path) as tmp:
        tmp.write_text(json.dumps(summary_dict(result), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return scores_path, summary_path
