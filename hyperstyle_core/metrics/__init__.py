"""The paper's reconstruction metrics (Table 2) as the official evaluation scripts compute them: per image L2,
LPIPS, identity similarity and MS-SSIM, summarised as mean ± std.

    images    pairing predictions with ground truths (two folders, or an inversion run's output folder)
    scores    the per-image metrics and their networks (from a models folder, or from single files)
    evaluate  scoring, summaries, the CSV + JSON reports
"""
from .evaluate import (Evaluation, MetricSummary, evaluate_folders, evaluate_pairs, evaluate_run, evaluate_tensors,
                       format_scores, format_summary, summarise, summary_dict, write_reports)
from .images import ImagePair, Pairing, pair_folders, pair_run, pixels_to_metric_input, read_metric_image
from .scores import (METRICS, NETWORK_FILE_ARGUMENTS, MetricNetworks, load_metric_network_files, load_metric_networks,
                     ms_ssim, parse_metrics, score_pair)

__all__ = ["Evaluation", "MetricSummary", "evaluate_folders", "evaluate_pairs", "evaluate_run", "evaluate_tensors",
           "format_scores", "format_summary",
           "summarise", "summary_dict", "write_reports", "ImagePair", "Pairing", "pair_folders", "pair_run",
           "pixels_to_metric_input", "read_metric_image", "METRICS", "MetricNetworks", "load_metric_networks",
           "load_metric_network_files", "NETWORK_FILE_ARGUMENTS", "ms_ssim", "parse_metrics", "score_pair"]
