"""`hyperstyle evaluate`: the paper's reconstruction metrics for two folders or an inversion run's output folder.

    hyperstyle evaluate --pred results/ --gt aligned/ [--models models/] [--metrics l2,lpips,id,ms_ssim] [--out DIR]
    hyperstyle evaluate --run output/

Prints the mean +- std per metric as the official scripts do and writes DIR/scores.csv + DIR/summary.json (DIR
defaults to `inference_metrics` beside --pred, the official scripts' place, or inside --run).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from ..devices import resolve_device
from ..io.folders import printable
from ..metrics.evaluate import evaluate_pairs, format_summary, write_reports
from ..metrics.images import Pairing, pair_folders, pair_run
from ..metrics.scores import load_metric_networks, parse_metrics

REPORT_FOLDER = "inference_metrics"     # scripts/calc_losses_on_images.py writes dirname(output_path)/inference_metrics


def _pairing_and_out(args: argparse.Namespace) -> tuple[Pairing, Path]:
    """What to compare and where the reports go; ValueError for a missing half of --pred / --gt."""
    if args.run is not None:
        if args.gt is not None:
            raise ValueError("--gt goes with --pred; --run takes the aligned inputs from the run's manifest")
        run = Path(args.run)
        return pair_run(run), Path(args.out) if args.out else run / REPORT_FOLDER
    if args.pred is None:
        raise ValueError("say what to compare: --pred DIR --gt DIR, or --run OUTPUT_DIR (a `hyperstyle run` folder)")
    if args.gt is None:
        raise ValueError("--pred needs --gt (the folder of ground truths, paired with the predictions by file name)")
    pred = Path(args.pred)
    return pair_folders(pred, args.gt), Path(args.out) if args.out else pred.resolve().parent / REPORT_FOLDER


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Score, print the summary, write the reports. Exit 0 (unpaired or unreadable files are listed, not errors)."""
    metrics = parse_metrics(args.metrics)
    pairing, out = _pairing_and_out(args)
    networks = load_metric_networks(metrics, args.models, resolve_device(args.device))     # refused before scoring
    with tqdm(total=len(pairing.pairs), unit="pair", desc="evaluate", disable=args.quiet) as bar:
        result = evaluate_pairs(pairing, metrics, networks, on_pair=lambda: bar.update(1))
    scores_path, summary_path = write_reports(result, out)
    for line in format_summary(result).splitlines():
        print(printable(line))
    print(f"wrote {printable(str(scores_path))} and {printable(str(summary_path))}")
    return 0
