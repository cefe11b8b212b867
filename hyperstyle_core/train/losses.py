"""The official training losses: L2, LPIPS-alex, the ArcFace ID loss, the MoCo similarity loss, and their weighted
sum as training/coach_hyperstyle.py:Coach.calc_loss computes it.

    loss_fn = load_losses(LossWeights(), "models/")          # faces: l2 1, lpips 0.8, id 0.1
    out = loss_fn(y_hat, y, x)                               # out.loss (backward), out.metrics (floats)

Each term follows the official criteria/ code (lpips/, id_loss.py, moco_loss.py) on the networks of
nn.loss_networks, loaded from converted safetensors files. A term with a non-zero weight whose file is absent is
refused with the command that gets it; no loss is ever switched off silently.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..io.checkpoints import load
from ..io.loss_network_files import LOSS_NETWORK_FILES, MEASURE_NETWORKS, find_loss_network
from ..nn.perceptual import FACE_SIZE, IDLoss, LPIPSLoss, MocoLoss, SimilarityResult

CARS_SIZE = (192, 256)                  # calc_loss pools cars images to this size, faces to 256x256

# Loss term -> the loss networks it needs (l2 needs none), and its official option
TERM_NETWORKS = MEASURE_NETWORKS
TERM_OPTION = {"l2": "--l2_lambda", "lpips": "--lpips_lambda", "id": "--id_lambda", "moco": "--moco_lambda"}


__all__ = ["LossWeights", "LossOutput", "HyperStyleLoss", "l2_loss", "find_loss_networks", "load_losses",
           "TERM_NETWORKS", "TERM_OPTION", "LPIPSLoss", "IDLoss", "MocoLoss", "SimilarityResult"]


# --------------------------------------------------------------------------------------------------- the terms
# LPIPS, ID and MoCo are the measures of nn.perceptual; L2 is the plain mean squared error.

def l2_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every element (F.mse_loss, as calc_loss). [B, 3, H, W] both -> scalar."""
    return F.mse_loss(y_hat, y)


# ------------------------------------------------------------------------------------------------ the weighted sum

@dataclass(frozen=True)
class LossWeights:
    """The loss multipliers (official --*_lambda options). Defaults: the official faces training command."""
    l2: float = 1.0                     # --l2_lambda: MSE on the reconstruction
    lpips: float = 0.8                  # --lpips_lambda: LPIPS-alex
    id: float = 0.1                     # --id_lambda: ArcFace identity (faces only)
    moco: float = 0.0                   # --moco_lambda: MoCo similarity (other domains: 0.5, with id 0)

    def __post_init__(self) -> None:
        for name in ("l2", "lpips", "id", "moco"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or value < 0:
                raise ValueError(f"the {name} loss weight ({TERM_OPTION[name]}) must be a finite number "
                                 f">= 0, got {value!r}")
        if self.id > 0 and self.moco > 0:
            raise ValueError(f"both the ID and the MoCo loss have weights > 0 (id {self.id}, moco {self.moco}); "
                             f"use one: --id_lambda for faces, --moco_lambda for other domains (set the other to 0)")
        if not (self.l2 or self.lpips or self.id or self.moco):
            raise ValueError("every loss weight is 0, so there is nothing to train; the official faces recipe is "
                             "--l2_lambda 1 --lpips_lambda 0.8 --id_lambda 0.1")

    @classmethod
    def for_domain(cls, faces: bool) -> "LossWeights":
        """The official weights: faces use the ID loss, every other domain the MoCo loss (official README)."""
        return cls() if faces else cls(id=0.0, moco=0.5)


@dataclass
class LossOutput:
    """What calc_loss returns: (loss, loss_dict, id_logs)."""
    loss: torch.Tensor                              # the weighted sum (scalar, differentiable)
    metrics: dict[str, float] = field(default_factory=dict)     # the official loss_dict keys: loss_id, id_improve,
    #                                                             loss_l2, loss_lpips, loss_moco, loss
    similarity_logs: list[dict[str, float]] | None = None       # per-sample ID / MoCo similarities (id_logs)


def _check_images(images: Mapping[str, torch.Tensor]) -> None:
    shape = None
    for name, t in images.items():
        if not isinstance(t, torch.Tensor) or t.ndim != 4 or t.shape[1] != 3 or not t.is_floating_point():
            found = f"shape {list(t.shape)} {t.dtype}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"the losses need float images [B, 3, H, W] in [-1, 1]; {name} is {found}")
        if shape is not None and t.shape != shape:
            raise ValueError(f"the losses compare images of one shape; got {list(shape)} and {name} "
                             f"{list(t.shape)}")
        shape = t.shape


class HyperStyleLoss(nn.Module):
    """The weighted training loss of Coach.calc_loss: ID, L2, LPIPS and MoCo terms, in that order.

    L2 compares the images as given; LPIPS, ID and MoCo compare them pooled to 256x256 (faces) or 192x256 (cars),
    as the official `face_pool` / AdaptiveAvgPool2d((192, 256)). The loss networks always stay in eval mode.
    """

    def __init__(self, weights: LossWeights, lpips: LPIPSLoss | None = None, id_loss: IDLoss | None = None,
                 moco: MocoLoss | None = None, cars: bool = False):
        super().__init__()
        for term, network in (("lpips", lpips), ("id", id_loss), ("moco", moco)):
            if getattr(weights, term) > 0 and network is None:
                raise ValueError(f"the {term} loss has weight {getattr(weights, term)} but no network was given; "
                                 f"build the losses with load_losses")
        if cars and weights.id > 0:
            raise ValueError("the ID loss is for 256x256 aligned faces; for cars use the MoCo loss "
                             "(--id_lambda 0 --moco_lambda 0.5)")
        self.weights = weights
        self.cars = cars
        self.lpips, self.id_loss, self.moco = lpips, id_loss, moco

    def train(self, mode: bool = True) -> "HyperStyleLoss":
        # The loss networks are frozen and always run in eval mode (BatchNorm statistics, no dropout), as official.
        return super().train(False)

    def _pool(self, images: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(images, CARS_SIZE if self.cars else (FACE_SIZE, FACE_SIZE))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> LossOutput:
        """y_hat: reconstruction, y: target, x: input (the coach passes x = y); [B, 3, H, W] in [-1, 1].

        Returns:
            LossOutput: the weighted loss, the official loss_dict as floats and the per-sample similarity logs.
        """
        _check_images({"y_hat": y_hat, "y": y, "x": x})
        w = self.weights
        y_hat_pooled, y_pooled, x_pooled = self._pool(y_hat), self._pool(y), self._pool(x)
        metrics: dict[str, float] = {}
        logs = None
        loss = y_hat.new_zeros(())
        if w.id > 0:
            sim = self.id_loss(y_hat_pooled, y_pooled, x_pooled)
            metrics.update(loss_id=float(sim.loss.detach()), id_improve=sim.improvement)
            loss, logs = sim.loss * w.id, sim.logs
        if w.l2 > 0:
            loss_l2 = l2_loss(y_hat, y)
            metrics["loss_l2"] = float(loss_l2.detach())
            loss = loss + loss_l2 * w.l2
        if w.lpips > 0:
            loss_lpips = self.lpips(y_hat_pooled, y_pooled)
            metrics["loss_lpips"] = float(loss_lpips.detach())
            loss = loss + loss_lpips * w.lpips
        if w.moco > 0:
            sim = self.moco(y_hat_pooled, y_pooled, x_pooled)
            metrics.update(loss_moco=float(sim.loss.detach()), id_improve=sim.improvement)
            loss, logs = loss + sim.loss * w.moco, sim.logs
        metrics["loss"] = float(loss.detach())
        return LossOutput(loss, metrics, logs)


# ----------------------------------------------------------------------------------------------------- loading

def find_loss_networks(weights: LossWeights, models_dir: str | os.PathLike,
                       files: Mapping[str, str | os.PathLike] | None = None) -> dict[str, Path]:
    """The converted file of every loss network the weighted terms need: `files[kind]` when given, else the file in
    `models_dir` under its download name or the name a hand conversion of the official file gives
    (io.loss_network_files).

    Raises:
        FileNotFoundError listing every absent file, the loss that needs it, and the commands that get them.
    """
    folder, files = Path(models_dir), dict(files or {})
    found: dict[str, Path] = {}
    missing: list[tuple[str, str]] = []         # (term, kind)
    for term, kinds in TERM_NETWORKS.items():
        for kind in kinds if getattr(weights, term) > 0 else ():
            path = Path(files[kind]) if kind in files else find_loss_network(kind, folder)
            if path is None:
                missing.append((term, kind))
            else:
                found[kind] = path
    if missing:
        raise FileNotFoundError(_missing_message(weights, folder, missing))
    return found


def _missing_message(weights: LossWeights, folder: Path, missing: list[tuple[str, str]]) -> str:
    needed = [(term, LOSS_NETWORK_FILES[kind]) for term, kind in missing]
    lines = [f"  - the {term} loss ({TERM_OPTION[term]} {getattr(weights, term):g}) needs the {entry.title}, "
             f"{entry.file} (official file {entry.official})" for term, entry in needed]
    names = " ".join(dict.fromkeys(entry.download for _, entry in needed))
    options = " ".join(dict.fromkeys(f"{TERM_OPTION[term]} 0" for term, _ in missing))
    return (f"training loss networks are not in {folder}:\n" + "\n".join(lines) + "\n"
            f"Get them with `hyperstyle download {names} --models {folder}` (or convert the official files with "
            f"`hyperstyle convert FILE --out {folder}`), or train without these losses: {options}")


def load_losses(weights: LossWeights, models_dir: str | os.PathLike, cars: bool = False,
                device: str | torch.device | None = "cpu",
                files: Mapping[str, str | os.PathLike] | None = None) -> HyperStyleLoss:
    """The weighted loss with the networks its non-zero terms need, read from converted files.

    Args:
        weights: the loss multipliers; every term above 0 must find its network files.
        models_dir: folder with the converted loss networks (io.loss_network_files).
        cars: pool to 192x256 (cars) instead of 256x256 before LPIPS / MoCo.
        device: where the networks run.
        files: optional kind -> path overrides ("ir_se50", "alexnet", "lpips_alex_lin", "moco_v2").
    Raises:
        FileNotFoundError listing the needed files that are absent (with the commands that get them); ValueError
        for a file of the wrong kind.
    """
    networks = {kind: load(path, device=device, dtype=torch.float32, expect=kind)
                for kind, path in find_loss_networks(weights, models_dir, files).items()}
    lpips = LPIPSLoss(networks["alexnet"], networks["lpips_alex_lin"]) if "alexnet" in networks else None
    id_loss = IDLoss(networks["ir_se50"]) if "ir_se50" in networks else None
    moco = MocoLoss(networks["moco_v2"]) if "moco_v2" in networks else None
    return HyperStyleLoss(weights, lpips, id_loss, moco, cars).to(device)
