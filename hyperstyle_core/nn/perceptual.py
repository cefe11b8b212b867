"""The measures built on the loss networks (nn.loss_networks), as the official criteria/ code computes them:
LPIPS v0.1 with AlexNet (criteria/lpips/), the ArcFace identity similarity (criteria/id_loss.py) and the MoCo-v2
feature similarity (criteria/moco_loss.py).

    lpips = LPIPSLoss(alexnet_features, lpips_linear)       # distance(x, y): batch-mean LPIPS (scalar)
    identity = IDLoss(ir_se50)                               # embed(x): unit embeddings [B, 512]

Training (train.losses) weights them into its loss; the metrics (metrics/) score image pairs with them. Pure
PyTorch: the networks come in as modules (io.loss_network_files finds and loads their files).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .loss_networks import ARCFACE_SIZE, AlexNetFeatures, IRSE50, LPIPSLinear, MoCoResNet50

__all__ = ["LPIPSLoss", "IDLoss", "MocoLoss", "SimilarityResult", "FACE_SIZE", "FACE_CROP", "MOCO_SIZE"]

# LPIPS' input scaling layer (criteria/lpips/networks.py:BaseNet): (x - shift) / scale, x in [-1, 1].
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
LPIPS_EPS = 1e-10                       # criteria/lpips/utils.py:normalize_activation
FACE_SIZE = 256                         # the ID loss' crop is defined on 256x256 aligned faces
FACE_CROP = (35, 223, 32, 220)          # rows 35:223, columns 32:220 (criteria/id_loss.py:extract_feats)
MOCO_SIZE = 224                         # criteria/moco_loss.py: F.interpolate(x, size=224) (nearest)


class LPIPSLoss(nn.Module):
    """LPIPS v0.1 with AlexNet (criteria/lpips/lpips.py): per tap, unit-normalise the channels, square the
    difference, weight the channels (linear layers), average over space; sum over taps and batch, divide by B."""

    def __init__(self,
                 alexnet: AlexNetFeatures,      # the feature extractor (torchvision AlexNet's `features`)
                 lin: LPIPSLinear):             # the per-tap channel weights (lpips' alex.pth)
        super().__init__()
        self.alexnet = alexnet.eval().requires_grad_(False)
        self.lin = lin.eval().requires_grad_(False)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT)[None, :, None, None], persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE)[None, :, None, None], persistent=False)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        taps = self.alexnet((images - self.shift) / self.scale)
        return [t / (torch.sqrt(torch.sum(t ** 2, dim=1, keepdim=True)) + LPIPS_EPS) for t in taps]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x, y: [B, 3, H, W] in [-1, 1]. Returns the batch-mean LPIPS distance (scalar)."""
        diffs = [(fx - fy) ** 2 for fx, fy in zip(self._features(x), self._features(y))]
        per_tap = [lin(d).mean((2, 3), True) for d, lin in zip(diffs, self.lin.layers())]
        return torch.sum(torch.cat(per_tap, 0)) / x.shape[0]


@dataclass
class SimilarityResult:
    """What the official IDLoss / MocoLoss return: (loss, sim_improvement, logs)."""
    loss: torch.Tensor                      # mean over the batch of 1 - <f(y_hat), f(y)> (scalar, differentiable)
    improvement: float                      # mean of <f(y_hat), f(y)> - <f(y), f(x)>
    logs: list[dict[str, float]]            # per sample: diff_target, diff_input, diff_views


def _similarity(y_hat_feats: torch.Tensor, y_feats: torch.Tensor, x_feats: torch.Tensor) -> SimilarityResult:
    """The shared tail of IDLoss.forward and MocoLoss.forward on unit embeddings [B, D]."""
    y_feats = y_feats.detach()
    diff_target = (y_hat_feats * y_feats).sum(1)
    diff_input = (y_hat_feats * x_feats).sum(1)
    diff_views = (y_feats * x_feats).sum(1)
    n = y_hat_feats.shape[0]
    logs = [{"diff_target": float(t), "diff_input": float(i), "diff_views": float(v)}
            for t, i, v in zip(diff_target.detach(), diff_input.detach(), diff_views.detach())]
    improvement = sum(log["diff_target"] - log["diff_views"] for log in logs) / n
    return SimilarityResult((1 - diff_target).sum() / n, improvement, logs)


class IDLoss(nn.Module):
    """ArcFace identity loss (criteria/id_loss.py): crop the face region of 256x256 aligned faces, pool to 112,
    compare IR-SE50 embeddings."""

    def __init__(self,
                 facenet: IRSE50):              # the ArcFace IR-SE50 backbone (model_ir_se50.pth)
        super().__init__()
        self.facenet = facenet.eval().requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, 256, 256] in [-1, 1] -> unit embeddings [B, 512]."""
        if tuple(images.shape[2:]) != (FACE_SIZE, FACE_SIZE):
            raise ValueError(f"the ID loss needs {FACE_SIZE}x{FACE_SIZE} aligned faces (its face crop "
                             f"[35:223, 32:220] is defined on them), got {images.shape[2]}x{images.shape[3]}. "
                             f"Use the MoCo loss for other domains")
        top, bottom, left, right = FACE_CROP
        faces = F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], (ARCFACE_SIZE, ARCFACE_SIZE))
        return self.facenet(faces)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> SimilarityResult:
        """y_hat (reconstruction), y (target), x (input): [B, 3, 256, 256] in [-1, 1]."""
        return _similarity(self.embed(y_hat), self.embed(y), self.embed(x))


class MocoLoss(nn.Module):
    """MoCo-v2 feature similarity (criteria/moco_loss.py): nearest-resize to 224x224, ResNet-50 features, unit
    norm. Unlike the official code, a batch of one works (the official `.squeeze()` drops the batch dimension)."""

    def __init__(self,
                 model: MoCoResNet50):          # the MoCo-v2 query encoder (moco_v2_800ep_pretrain.pt)
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [-1, 1] -> unit features [B, 2048]."""
        feats = self.model(F.interpolate(images, size=MOCO_SIZE))
        return F.normalize(feats, dim=1).flatten(1)

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> SimilarityResult:
        """y_hat (reconstruction), y (target), x (input): [B, 3, H, W] in [-1, 1]."""
        return _similarity(self.embed(y_hat), self.embed(y), self.embed(x))
