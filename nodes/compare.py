"""HyperStyle Compare: the paper's reconstruction metrics (L2, LPIPS, ID similarity, MS-SSIM) of two IMAGE batches,
the same numbers `hyperstyle evaluate` gives for the saved files."""
from __future__ import annotations

import logging
import math

import torch

from ..hyperstyle_core.metrics import (METRICS, NETWORK_FILE_ARGUMENTS, MetricNetworks, evaluate_tensors,
                                       format_scores, format_summary, load_metric_network_files,
                                       pixels_to_metric_input)
from . import _comfy
from ._files import picker
from ._images import to_rgb
from .loaders import load_cached

log = logging.getLogger("hyperstyle.nodes")

NODE = "HyperStyle Compare"
# The network inputs are the keyword arguments of load_metric_network_files (NETWORK_FILE_ARGUMENTS says which
# metric needs each); a metric's switch is use_<metric>.


def _network_problem(input_name: str, picked: object) -> str | None:
    """Why the file picked for a network input cannot be used (absent, or a name leaving the model folders), or
    None."""
    metric, network = NETWORK_FILE_ARGUMENTS[input_name]
    get = (f"get it with `hyperstyle download {network.download} --models ComfyUI/models/hyperstyle`, refresh the "
           f"page and pick it, or set use_{metric} to false")
    if not isinstance(picked, str) or not picked:
        return f"{NODE}: the {metric} metric needs the {network.title} ({network.file}) and none is picked; {get}"
    try:
        _comfy.resolve_model_path(picked)
    except (ValueError, FileNotFoundError) as e:
        return f"{NODE}: {e} The {metric} metric needs the {network.title}; {get}"
    return None


def _first_problem(switches: dict[str, bool], picked: dict[str, object]) -> str | None:
    """The first network input that a switched-on metric needs and that cannot be used, said for the user."""
    for input_name, (metric, _) in NETWORK_FILE_ARGUMENTS.items():
        problem = _network_problem(input_name, picked[input_name]) if switches[metric] else None
        if problem:
            return problem
    return None


def _batches(images: torch.Tensor, reference: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Both batches as metric inputs [1, 3, 256, 256]; one reference image is compared with every image."""
    images, reference = to_rgb(images, f"{NODE} images"), to_rgb(reference, f"{NODE} reference")
    n, m = images.shape[0], reference.shape[0]
    if m not in (1, n) and n != 1:
        raise ValueError(f"{NODE}: got {n} images but {m} reference images; give one reference per image (in the "
                         f"same order) or a single reference for all")
    preds = [pixels_to_metric_input(row) for row in images]
    refs = [pixels_to_metric_input(row) for row in reference]
    count = max(n, m)
    return (preds * count if n == 1 else preds), (refs * count if m == 1 else refs)


class HyperStyleCompare:
    CATEGORY = "HyperStyle/metrics"
    FUNCTION = "execute"
    DESCRIPTION = ("Scores images against references as the paper's Table 2 (the official evaluation scripts): both "
                   "resized to 256x256, per image L2 (MSE in [-1, 1]), LPIPS-AlexNet, ArcFace ID similarity and "
                   "MS-SSIM, and their mean +- std. The same numbers as `hyperstyle evaluate` on the saved files.")
    RETURN_TYPES = ("STRING", "FLOAT", "FLOAT", "FLOAT", "FLOAT")
    RETURN_NAMES = ("report", "l2", "lpips", "id", "ms_ssim")
    OUTPUT_TOOLTIPS = ("Per-image scores and the mean +- std of each metric.",
                       "Mean L2 (lower is better).", "Mean LPIPS (lower is better; NaN when use_lpips is off).",
                       "Mean ID similarity (higher is better, 1 = same embedding; NaN when use_id is off).",
                       "Mean MS-SSIM (higher is better, 1 = identical).")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The reconstructions (e.g. HyperStyle Refine's output)."}),
            "reference": ("IMAGE", {"tooltip": "The ground truths in the same order (e.g. the aligned faces), or one "
                                               "image for all."}),
            "use_lpips": ("BOOLEAN", {"default": True, "tooltip": "Compute LPIPS (needs the two LPIPS files)."}),
            "use_id": ("BOOLEAN", {"default": True, "tooltip": "Compute ID similarity (needs the IR-SE50 file; "
                                                               "for aligned faces only)."}),
            "lpips_network": picker("alexnet", "LPIPS AlexNet (alexnet.safetensors, `hyperstyle download alexnet`)."),
            "lpips_layers": picker("lpips_alex_lin", "LPIPS linear layers (lpips_alex.safetensors, `hyperstyle "
                                                     "download lpips_alex`)."),
            "id_network": picker("ir_se50", "ArcFace IR-SE50 (model_ir_se50.safetensors, `hyperstyle download "
                                            "model_ir_se50`)."),
        }}

    @classmethod
    def VALIDATE_INPUTS(cls, use_lpips=True, use_id=True, lpips_network=None, lpips_layers=None, id_network=None):
        # Replaces ComfyUI's check against the lists (which may be empty before a download) with one that says how
        # to get the files; switched-off metrics need none.
        picked = {"lpips_network": lpips_network, "lpips_layers": lpips_layers, "id_network": id_network}
        return _first_problem({"lpips": use_lpips, "id": use_id}, picked) or True

    def _networks(self, use_lpips: bool, use_id: bool, picked: dict[str, object]) -> MetricNetworks:
        switches = {"lpips": use_lpips, "id": use_id}
        problem = _first_problem(switches, picked)
        if problem:
            raise FileNotFoundError(problem)
        wanted = {name: picked[name] for name, (metric, _) in NETWORK_FILE_ARGUMENTS.items() if switches[metric]}
        # load_cached reuses the networks a previous run of the graph loaded (and resolves the picked names)
        return load_metric_network_files(**wanted, device=_comfy.torch_device(), load_network=load_cached)

    def execute(self, images, reference, use_lpips=True, use_id=True, lpips_network=None, lpips_layers=None,
                id_network=None):
        preds, refs = _batches(images, reference)
        networks = self._networks(bool(use_lpips), bool(use_id), {"lpips_network": lpips_network,
                                                                  "lpips_layers": lpips_layers,
                                                                  "id_network": id_network})
        metrics = [m for m in METRICS if (m != "lpips" or use_lpips) and (m != "id" or use_id)]
        progress = _comfy.Progress(len(preds))
        names = [f"image {i + 1}" for i in range(len(preds))]
        result = evaluate_tensors(preds, refs, names, metrics, networks, on_pair=progress.step)
        report = format_scores(result) + "\nmean +- std:\n" + format_summary(result, files=False)
        log.info("%s:\n%s", NODE, report)
        means = {m: result.summary[m].mean if m in result.summary else math.nan for m in METRICS}
        return (report, means["l2"], means["lpips"], means["id"], means["ms_ssim"])
