"""HyperStyle Compare: the paper's reconstruction metrics (L2, LPIPS, ID similarity, MS-SSIM) of two IMAGE batches,
the same numbers `hyperstyle evaluate` gives for the saved files."""
from __future__ import annotations

import logging
import math

import torch

from ..hyperstyle_core.io.checkpoints import DEFAULT_FILES, KIND_TITLES
from ..hyperstyle_core.metrics.evaluate import evaluate_tensors, format_scores, format_summary
from ..hyperstyle_core.metrics.images import pixels_to_metric_input
from ..hyperstyle_core.metrics.scores import METRICS, MetricNetworks
from ..hyperstyle_core.train.losses import LOSS_NETWORK_SOURCES, IDLoss, LPIPSLoss
from . import _comfy
from ._files import picker
from ._images import to_rgb
from .loaders import load_cached

log = logging.getLogger("hyperstyle.nodes")

NODE = "HyperStyle Compare"
# input name -> (model kind, the metric switch that needs it)
NETWORK_INPUTS = {"lpips_network": ("alexnet", "use_lpips"), "lpips_layers": ("lpips_alex_lin", "use_lpips"),
                  "id_network": ("ir_se50", "use_id")}


def _network_problem(name: object, kind: str, switch: str) -> str | None:
    """Why the file picked for `kind` cannot be used (absent, or a name leaving the model folders), or None."""
    metric = switch.removeprefix("use_")
    get = (f"get it with `hyperstyle download {LOSS_NETWORK_SOURCES[kind][0]} --models ComfyUI/models/hyperstyle`, "
           f"refresh the page and pick it, or set {switch} to false")
    if not isinstance(name, str) or not name:
        return (f"{NODE}: the {metric} metric needs the {KIND_TITLES[kind]} ({DEFAULT_FILES[kind]}) and none is "
                f"picked; {get}")
    try:
        _comfy.resolve_model_path(name)
    except (ValueError, FileNotFoundError) as e:
        return f"{NODE}: {e} The {metric} metric needs the {KIND_TITLES[kind]}; {get}"
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
        switches = {"use_lpips": use_lpips, "use_id": use_id}
        picked = {"lpips_network": lpips_network, "lpips_layers": lpips_layers, "id_network": id_network}
        for name, (kind, switch) in NETWORK_INPUTS.items():
            problem = _network_problem(picked[name], kind, switch) if switches[switch] else None
            if problem:
                return problem
        return True

    def _networks(self, use_lpips: bool, use_id: bool, picked: dict[str, object]) -> MetricNetworks:
        switches = {"use_lpips": use_lpips, "use_id": use_id}
        for name, (kind, switch) in NETWORK_INPUTS.items():
            problem = _network_problem(picked[name], kind, switch) if switches[switch] else None
            if problem:
                raise FileNotFoundError(problem)
        device = _comfy.torch_device()
        lpips = LPIPSLoss(load_cached(picked["lpips_network"], "alexnet"),
                          load_cached(picked["lpips_layers"], "lpips_alex_lin")).to(device) if use_lpips else None
        identity = IDLoss(load_cached(picked["id_network"], "ir_se50")).to(device) if use_id else None
        return MetricNetworks(lpips=lpips, id=identity)

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
