"""Per-image scores as the official evaluation scripts compute them, on [1, 3, 256, 256] images in [-1, 1].

- l2: torch.nn.MSELoss (scripts/calc_losses_on_images.py).
- lpips: LPIPS v0.1 AlexNet (criteria/lpips), nn.perceptual.LPIPSLoss (the training loss's term) on one image.
- ms_ssim: criteria/ms_ssim.py:msssim (from jorge-pessoa/pytorch-msssim) on the same [-1, 1] tensors the official
  script passes: 11x11 Gaussian window (sigma 1.5, no padding), five scales with weights (0.0448, 0.2856, 0.3001,
  0.2363, 0.1333), 2x2 average pooling between scales, and its dynamic range read from the prediction at each
  scale (2 when it holds a value below -0.5, else 1). A negative contrast term gives NaN, as the official; summaries
  skip NaN.
- id: cosine similarity of the ArcFace IR-SE50 embeddings of the face crop [35:223, 32:220] pooled to 112x112
  (criteria/id_loss.py, the identity metric the training reports). The paper's Table 2 identity column comes from
  scripts/calc_id_loss_parallel.py, which uses CurricularFace (IR-101) after MTCNN alignment instead.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..io.checkpoints import load
from ..io.loss_network_files import LOSS_NETWORK_FILES, MEASURE_NETWORKS, LossNetworkFile, find_loss_network
from ..nn.perceptual import IDLoss, LPIPSLoss

__all__ = ["METRICS", "NETWORK_METRICS", "NETWORK_FILE_ARGUMENTS", "parse_metrics", "l2_score", "ms_ssim",
           "MetricNetworks", "load_metric_networks", "load_metric_network_files", "score_pair", "is_missing"]

METRICS = ("l2", "lpips", "id", "ms_ssim")          # reports list the metrics in this order
NETWORK_METRICS = ("lpips", "id")                   # metrics that need loss-network files
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)      # one per scale (criteria/ms_ssim.py)
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_ALIASES = {"msssim": "ms_ssim", "ms-ssim": "ms_ssim", "mse": "l2"}     # the official script says msssim


def parse_metrics(spec: str | Iterable[str]) -> tuple[str, ...]:
    """'l2,lpips' (or a list) -> the metrics in report order. Raises ValueError for unknown or no metrics."""
    names = spec.split(",") if isinstance(spec, str) else list(spec)
    wanted = set()
    for raw in names:
        name = _ALIASES.get(str(raw).strip().lower(), str(raw).strip().lower())
        if not name:
            continue
        if name not in METRICS:
            raise ValueError(f"unknown metric {raw!r}; choose from {', '.join(METRICS)} (comma-separated)")
        wanted.add(name)
    if not wanted:
        raise ValueError(f"no metric chosen; choose from {', '.join(METRICS)} (comma-separated)")
    return tuple(m for m in METRICS if m in wanted)


# ----------------------------------------------------------------------------------------------- pixel metrics

def l2_score(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean squared error over every element (torch.nn.MSELoss). [1, 3, H, W] in [-1, 1] both."""
    return float(F.mse_loss(pred, gt))


def _gaussian_window(size: int, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[channels, 1, size, size] normalised Gaussian (sigma 1.5) for a depthwise convolution. Normalised in float32
    like the official window: the variance terms below cancel catastrophically, so its rounding shows."""
    taps = torch.tensor([math.exp(-(i - size // 2) ** 2 / (2 * SSIM_SIGMA ** 2)) for i in range(size)],
                        dtype=torch.float32)
    g = (taps / taps.sum())[:, None]
    return (g @ g.T).to(dtype=dtype, device=device).expand(channels, 1, size, size).contiguous()


def _value_range(pred: torch.Tensor) -> float:
    """The official dynamic range L, guessed from the first image: max 255 or 1, min -1 or 0."""
    high = 255.0 if float(pred.max()) > 128 else 1.0
    low = -1.0 if float(pred.min()) < -0.5 else 0.0
    return high - low


def _ssim_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean SSIM, mean contrast-structure) of one scale; valid convolution (no padding)."""
    value_range = _value_range(x)       # guessed again at every scale, as the official ssim() does
    channels, side = x.shape[1], min(SSIM_WINDOW, x.shape[2], x.shape[3])
    window = _gaussian_window(side, channels, x.dtype, x.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, window, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x ** 2
    var_y = blur(y * y) - mu_y ** 2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    cs_num, cs_den = 2 * cov + c2, var_x + var_y + c2
    # One division of the products, in the official order: float32 results then match to the last bits.
    ssim_map = ((2 * mu_x * mu_y + c1) * cs_num) / ((mu_x ** 2 + mu_y ** 2 + c1) * cs_den)
    return ssim_map.mean(), (cs_num / cs_den).mean()


def ms_ssim(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Multi-scale SSIM of criteria/ms_ssim.py:msssim (see the module docstring). [1, 3, H, W] both; H, W >= 16
    for five scales (256 as the metrics use)."""
    ssims, contrasts = [], []
    for _ in MS_SSIM_WEIGHTS:
        ssim, contrast = _ssim_terms(pred, gt)
        ssims.append(ssim)
        contrasts.append(contrast)
        pred, gt = F.avg_pool2d(pred, 2), F.avg_pool2d(gt, 2)
    weights = torch.tensor(MS_SSIM_WEIGHTS, dtype=pred.dtype, device=pred.device)
    # Contrast-structure of the first four scales, SSIM of the last (the Matlab reference's definition).
    powered_cs = torch.stack(contrasts) ** weights
    powered_ssim = torch.stack(ssims) ** weights
    return float(torch.prod(powered_cs[:-1]) * powered_ssim[-1])


# --------------------------------------------------------------------------------------------- network metrics

@dataclass
class MetricNetworks:
    """The loss networks of the chosen metrics (None where not chosen)."""
    lpips: LPIPSLoss | None = None
    id: IDLoss | None = None


# The keyword arguments of `load_metric_network_files` -> (the metric that needs the file, what the file is: its
# kind, title, converted name and `hyperstyle download` name, for messages that say how to get it)
NETWORK_FILE_ARGUMENTS: dict[str, tuple[str, LossNetworkFile]] = {
    "lpips_network": ("lpips", LOSS_NETWORK_FILES["alexnet"]),
    "lpips_layers": ("lpips", LOSS_NETWORK_FILES["lpips_alex_lin"]),
    "id_network": ("id", LOSS_NETWORK_FILES["ir_se50"])}
# (file, kind) -> the network; `file` is whatever the loader understands (a path for io.checkpoints.load)
NetworkLoader = Callable[[Any, str], nn.Module]


def _missing_message(missing: dict[str, list[str]], folder: Path, metrics: tuple[str, ...]) -> str:
    lines = [f"  - the {metric} metric needs the {LOSS_NETWORK_FILES[kind].title}, {LOSS_NETWORK_FILES[kind].file}"
             for metric, kinds in missing.items() for kind in kinds]
    names = " ".join(dict.fromkeys(LOSS_NETWORK_FILES[kind].download for kinds in missing.values() for kind in kinds))
    rest = ",".join(m for m in metrics if m not in missing) or "l2,ms_ssim"
    return (f"metric networks are not in {folder}:\n" + "\n".join(lines) + "\n"
            f"Get them with `hyperstyle download {names} --models {folder}`, or leave those metrics out: "
            f"--metrics {rest}")


def load_metric_networks(metrics: Iterable[str], models_dir: str | os.PathLike,
                         device: str | torch.device = "cpu") -> MetricNetworks:
    """Load the networks the chosen metrics need from converted files in `models_dir` (their `hyperstyle download`
    names, io.loss_network_files).

    Raises:
        FileNotFoundError listing every absent file with the `hyperstyle download` command that gets it and the
        --metrics that leaves those metrics out; ValueError for a file of the wrong kind.
    """
    metrics, folder = parse_metrics(metrics), Path(models_dir)
    found = {kind: find_loss_network(kind, folder)
             for metric in metrics if metric in NETWORK_METRICS for kind in MEASURE_NETWORKS[metric]}
    missing = {metric: [kind for kind in MEASURE_NETWORKS[metric] if found[kind] is None]
               for metric in metrics if metric in NETWORK_METRICS}
    missing = {metric: kinds for metric, kinds in missing.items() if kinds}
    if missing:
        raise FileNotFoundError(_missing_message(missing, folder, metrics))
    return load_metric_network_files(**{argument: found.get(entry.kind)
                                        for argument, (_, entry) in NETWORK_FILE_ARGUMENTS.items()}, device=device)


def load_metric_network_files(lpips_network: Any = None, lpips_layers: Any = None, id_network: Any = None,
                              device: str | torch.device = "cpu", load_network: NetworkLoader | None = None
                              ) -> MetricNetworks:
    """The metric networks from single files: LPIPS from its two files, ID from its one; a metric whose files are
    not given is left out (None).

    Args:
        lpips_network: the LPIPS AlexNet features (alexnet.safetensors), with `lpips_layers`.
        lpips_layers: the LPIPS linear layers (lpips_alex.safetensors), with `lpips_network`.
        id_network: the ArcFace IR-SE50 (model_ir_se50.safetensors).
        device: where the networks run.
        load_network: (file, kind) -> network; default: `io.checkpoints.load(file, device, float32, expect=kind)`.
            A caller with a cache of loaded models passes its own (the files are then what it understands).
    Raises:
        ValueError when only one of the two LPIPS files is given, or a file is of the wrong kind;
        FileNotFoundError for a file that is not there.
    """
    if (lpips_network is None) != (lpips_layers is None):
        given, absent = ("lpips_network", "lpips_layers") if lpips_layers is None else ("lpips_layers",
                                                                                        "lpips_network")
        raise ValueError(f"LPIPS needs two files and only {given} was given; give {absent} too "
                         f"({NETWORK_FILE_ARGUMENTS[absent][1].file}), or neither")

    def read(file: Any, kind: str) -> nn.Module:
        if load_network is not None:
            return load_network(file, kind)
        return load(file, device=device, dtype=torch.float32, expect=kind)

    lpips = None if lpips_network is None else LPIPSLoss(read(lpips_network, "alexnet"),
                                                         read(lpips_layers, "lpips_alex_lin")).to(device)
    identity = None if id_network is None else IDLoss(read(id_network, "ir_se50")).to(device)
    return MetricNetworks(lpips=lpips, id=identity)


@torch.no_grad()
def score_pair(pred: torch.Tensor, gt: torch.Tensor, metrics: Iterable[str],
               networks: MetricNetworks | None = None) -> dict[str, float]:
    """The chosen metrics for one pair. pred, gt: [1, 3, 256, 256] in [-1, 1] (`read_metric_image`).

    Returns:
        metric -> score (l2, lpips: lower is better; id, ms_ssim: higher is better, 1 for identical images).
    """
    networks = networks or MetricNetworks()
    scores: dict[str, float] = {}
    for metric in parse_metrics(metrics):
        if metric == "l2":
            scores[metric] = l2_score(pred, gt)
        elif metric == "ms_ssim":
            scores[metric] = ms_ssim(pred, gt)
        elif metric == "lpips":
            _require(networks.lpips, metric)
            device = next(networks.lpips.parameters()).device
            scores[metric] = float(networks.lpips(pred.to(device), gt.to(device)))
        else:
            _require(networks.id, metric)
            device = next(networks.id.parameters()).device
            scores[metric] = float((networks.id.embed(pred.to(device)) * networks.id.embed(gt.to(device))).sum())
    return scores


def _require(network: object, metric: str) -> None:
    if network is None:
        raise ValueError(f"the {metric} metric needs its network; load it with load_metric_networks")


def is_missing(score: float) -> bool:
    """Whether a score is NaN (an MS-SSIM whose contrast term went negative); summaries skip it."""
    return math.isnan(score)
