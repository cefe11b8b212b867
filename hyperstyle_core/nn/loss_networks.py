"""The networks behind the official training losses (criteria/), with the official files' keys.

- `IRSE50`: ArcFace `Backbone(112, 50, 'ir_se')` of models/encoders/model_irse.py (ID loss), keys as in
  model_ir_se50.pth.
- `AlexNetFeatures`: torchvision's `alexnet().features` (LPIPS), keys `features.*` as in alexnet-owt-7be5be79.pth
  (the classifier is never used, so it is not part of the network).
- `LPIPSLinear`: LPIPS v0.1 linear layers, keys `lin{i}.model.1.weight` as in lpips' alex.pth.
- `MoCoResNet50`: torchvision `resnet50` minus `fc`, the MoCo-v2 query encoder (criteria/moco_loss.py), keys of
  `module.encoder_q.*` with that prefix removed.

Fixed architectures: their stored config is empty (`LossNetworkConfig`). Pure PyTorch, no torchvision.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..devices import full_float32
from .encoders import input_layer, ir_se50_body

ARCFACE_SIZE = 112                                  # IR-SE50 input side (Backbone(input_size=112))
ALEXNET_TAPS = (1, 4, 7, 9, 11)                     # LPIPS target_layers [2, 5, 8, 10, 12] (1-based): the ReLUs
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)         # channels at those taps (LinLayers' n_channels_list)
RESNET50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))      # (planes, blocks, stride)
MOCO_FEATURES = 2048                                # ResNet-50 pooled feature width


class IRSE50(nn.Module):
    """ArcFace IR-SE50 at 112x112: [B, 3, 112, 112] -> l2-normalised identity embeddings [B, 512]."""

    kind: ClassVar[str] = "ir_se50"

    def __init__(self, drop_ratio: float = 0.6):
        super().__init__()
        self.input_layer = input_layer(3, 64)
        self.body = ir_se50_body()
        spatial = ARCFACE_SIZE // 16        # four stride-2 stages: 112 -> 7
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(512 * spatial * spatial, 512), nn.BatchNorm1d(512))

    @full_float32
    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """faces: [B, 3, 112, 112] in [-1, 1]. Returns [B, 512] with unit l2 norm (no epsilon, as the official)."""
        x = self.output_layer(self.body(self.input_layer(faces)))
        return x / torch.norm(x, 2, 1, True)


class AlexNetFeatures(nn.Module):
    """torchvision AlexNet's convolutional part; the forward pass returns the five ReLU outputs LPIPS compares."""

    kind: ClassVar[str] = "alexnet"

    def __init__(self):
        super().__init__()
        # Same layer indices as torchvision's `features`, so the keys are features.{0,3,6,8,10}.*
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, 4, 2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(3, 2),
        )

    @full_float32
    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x: [B, 3, H, W] (already LPIPS-scaled). Returns the 5 feature maps at ALEXNET_TAPS, channels as
        ALEXNET_CHANNELS; the layers after the last tap are not run (as the official BaseNet.forward)."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in ALEXNET_TAPS:
                out.append(x)
            if len(out) == len(ALEXNET_TAPS):
                break
        return out


class _LinLayer(nn.Module):
    """`lin{i}` of LPIPS: Sequential(Dropout, Conv1x1 without bias) in the official file; dropout is off in eval."""

    def __init__(self, channels: int):
        super().__init__()
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, 1, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class LPIPSLinear(nn.Module):
    """LPIPS v0.1 (alex) linear calibration: one non-negative 1x1 conv per AlexNet tap."""

    kind: ClassVar[str] = "lpips_alex_lin"

    def __init__(self):
        super().__init__()
        for i, channels in enumerate(ALEXNET_CHANNELS):
            self.add_module(f"lin{i}", _LinLayer(channels))

    def layers(self) -> list[nn.Module]:
        return [getattr(self, f"lin{i}") for i in range(len(ALEXNET_CHANNELS))]


class Bottleneck(nn.Module):
    """torchvision ResNet-50 bottleneck (v1.5: stride on the 3x3 conv)."""

    expansion = 4

    def __init__(self, in_channels: int, planes: int, stride: int):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class MoCoResNet50(nn.Module):
    """MoCo-v2 query encoder: torchvision ResNet-50 up to the average pool. [B, 3, H, W] -> [B, 2048, 1, 1]."""

    kind: ClassVar[str] = "moco_v2"

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        in_channels = 64
        for i, (planes, blocks, stride) in enumerate(RESNET50_STAGES, 1):
            stage = [Bottleneck(in_channels, planes, stride)]
            in_channels = planes * Bottleneck.expansion
            stage += [Bottleneck(in_channels, planes, 1) for _ in range(blocks - 1)]
            self.add_module(f"layer{i}", nn.Sequential(*stage))

    @full_float32
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return F.adaptive_avg_pool2d(x, 1)


LOSS_NETWORKS: dict[str, type[nn.Module]] = {c.kind: c for c in (IRSE50, AlexNetFeatures, LPIPSLinear, MoCoResNet50)}
LOSS_NETWORK_KINDS = tuple(LOSS_NETWORKS)


@dataclass(frozen=True)
class LossNetworkConfig:
    """The stored config of a loss network: the architectures are fixed, so it holds nothing but the kind."""
    kind: str                           # one of LOSS_NETWORK_KINDS

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, kind: str, d: Any) -> "LossNetworkConfig":
        if kind not in LOSS_NETWORKS:
            raise ValueError(f"unknown loss network {kind!r}; known: {', '.join(LOSS_NETWORK_KINDS)}")
        if not isinstance(d, Mapping) or d:
            raise ValueError(f"the {kind} config must be an empty JSON object (the architecture is fixed), got "
                             f"{str(d)[:80]}")
        return cls(kind)

    def build(self) -> nn.Module:
        return LOSS_NETWORKS[self.kind]()
