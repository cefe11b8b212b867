"""The HyperStyle hypernetwork exactly as the official code has it (not as the paper draws it).

ResNet34 backbone on the 6-channel (image, reconstruction) input -> 16x16x512 features; one refinement block per
tuned generator layer. Layers in SHARED_LAYERS use a HyperRefinementBlock whose 512-d code goes through one shared
hypernet predicting a full 3x3 offset per kernel entry; the other 3x3 layers predict one offset per (out, in)
channel pair, repeated over the 3x3 kernel. See ../shared/fixtures/official/MANIFEST.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..devices import full_float32
from .stylegan2 import EqualLinear, GeneratorConfig, modulated_layer_table

# Official delta indices (generator layer order) that share one hypernet (models/hypernetworks/hypernetwork.py).
SHARED_LAYERS = (0, 2, 3, 5, 6, 8, 9, 11, 12)
DEFAULT_LAYERS_TO_TUNE = (0, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24)
VARIANTS = ("shared", "separable")


@dataclass(frozen=True)
class HyperNetConfig:
    generator: GeneratorConfig
    layers_to_tune: tuple[int, ...] = DEFAULT_LAYERS_TO_TUNE   # official delta indices that get a block
    variant: str = "shared"                                    # "shared" or "separable" (non-shared blocks)
    input_nc: int = 6                                          # image + reconstruction
    features: int = 512                                        # backbone output channels
    spatial: int = 16                                          # nominal feature map size (256 input)
    tuned: tuple[int, ...] = field(init=False)                 # layers_to_tune that exist at this size

    def __post_init__(self):
        n = len(modulated_layer_table(self.generator))
        object.__setattr__(self, "tuned", tuple(i for i in self.layers_to_tune if i < n))


class BasicBlock(nn.Module):
    """torchvision ResNet BasicBlock (same keys: conv1, bn1, conv2, bn2, downsample.{0,1})."""

    def __init__(self,
                 in_c: int,         # input channels
                 out_c: int,        # output channels
                 stride: int,       # stride of the first conv (and of the shortcut's 1x1 conv)
                 ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_c, out_c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_c)
        self.conv2 = nn.Conv2d(out_c, out_c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_c)
        self.downsample = None
        if stride != 1 or in_c != out_c:
            self.downsample = nn.Sequential(nn.Conv2d(in_c, out_c, 1, stride, bias=False), nn.BatchNorm2d(out_c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


def resnet34_body(divisor: int = 1) -> nn.Sequential:
    """torchvision resnet34 layer1..4 (widths / divisor; 1 for real models)."""
    blocks = []
    in_c = 64 // divisor
    for out_c, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        out_c //= divisor
        blocks.append(BasicBlock(in_c, out_c, stride))
        blocks += [BasicBlock(out_c, out_c, 1) for _ in range(n - 1)]
        in_c = out_c
    return nn.Sequential(*blocks)


def _strided_convs(in_c: int, inner_c: int, out_c: int, n_inner: int, first_stride: int) -> nn.Sequential:
    """conv(in->inner, first_stride), n_inner x conv(inner->inner, s2), conv(inner->out, s2).

    LeakyReLU(0.01) after each.
    """
    layers: list[nn.Module] = [nn.Conv2d(in_c, inner_c, 3, first_stride, 1), nn.LeakyReLU()]
    for _ in range(n_inner):
        layers += [nn.Conv2d(inner_c, inner_c, 3, 2, 1), nn.LeakyReLU()]
    layers += [nn.Conv2d(inner_c, out_c, 3, 2, 1), nn.LeakyReLU()]
    return nn.Sequential(*layers)


class SharedWeightsHypernet(nn.Module):
    """z [B, 512] -> full 3x3 kernel offsets [B, 512, 512, 3, 3] (official SharedWeightsHypernet, mode=None)."""

    def __init__(self,
                 z_dim: int = 512,      # code width
                 in_size: int = 512,    # input channels of the kernels it predicts
                 out_size: int = 512,   # output channels of the kernels it predicts
                 f_size: int = 3,       # kernel size
                 ):
        super().__init__()
        self.z_dim, self.in_size, self.out_size, self.f_size = z_dim, in_size, out_size, f_size
        self.w1 = nn.Parameter(torch.zeros(z_dim, out_size * f_size * f_size))
        self.b1 = nn.Parameter(torch.zeros(out_size * f_size * f_size))
        self.w2 = nn.Parameter(torch.zeros(z_dim, in_size * z_dim))
        self.b2 = nn.Parameter(torch.zeros(in_size * z_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim] -> [B, out, in, k, k]."""
        batch = z.shape[0]
        h_in = torch.addmm(self.b2, z, self.w2).view(batch * self.in_size, self.z_dim)
        h_final = torch.addmm(self.b1, h_in, self.w1)           # [B*in, out*9] in memory ...
        # ... reinterpreted as [B, out, in, 3, 3] exactly as the official view() does.
        return h_final.view(batch, self.out_size, self.in_size, self.f_size, self.f_size)

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, kernels=[{self.out_size}, {self.in_size}, {self.f_size}, {self.f_size}]"


class HyperRefinementBlock(nn.Module):
    """16x16 features -> z [B, 512] for the shared hypernet (which is held by the network, not by the block)."""

    def __init__(self,
                 n_channels: int = 512,     # backbone feature channels
                 inner_c: int = 128,        # width of the strided convs
                 spatial: int = 16,         # backbone feature map size
                 out_c: int = 512,          # code width
                 ):
        super().__init__()
        self.out_c = out_c
        self.convs = _strided_convs(n_channels, inner_c, out_c, int(math.log2(spatial)) - 1, first_stride=1)
        self.linear = EqualLinear(out_c, out_c)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_channels, spatial, spatial] -> code [B, out_c]."""
        return self.linear(self.convs(features).reshape(-1, self.out_c))


class RefinementBlock(nn.Module):
    """Non-shared layer: one offset per (out, in) channel pair (3x3 layers), or a full 1x1 kernel (ToRGB)."""

    def __init__(self,
                 out_channels: int,         # output channels of the generator layer it refines
                 in_channels: int,          # input channels of that layer
                 kernel_size: int,          # that layer's kernel size (3 or 1)
                 n_channels: int = 512,     # backbone feature channels
                 inner_c: int = 256,        # width of the strided convs
                 spatial: int = 16,         # backbone feature map size
                 out_c: int = 512,          # channels before the output layer
                 ):
        super().__init__()
        self.out_channels, self.in_channels, self.kernel_size = out_channels, in_channels, kernel_size
        n_pools = int(math.log2(spatial)) - (2 if kernel_size == 3 else 1)
        self.convs = _strided_convs(n_channels, inner_c, out_c, n_pools - 1, first_stride=2)
        conv = nn.Conv2d(out_c, in_channels * out_channels, kernel_size=1)
        self.output = nn.Sequential(conv) if kernel_size == 1 else nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), conv)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """[B, n_channels, spatial, spatial] -> offsets [B, out, in, k, k] (3x3: one value per channel pair)."""
        return self.offsets(one_by_one_output(self.pooled(features), self.output_layer))

    @property
    def output_layer(self) -> nn.Conv2d:
        """The 1x1 output conv: in_channels * out_channels filters over out_c features."""
        return self.output[-1]

    def pooled(self, features: torch.Tensor) -> torch.Tensor:
        """The output layer's input: [B, out_c, 1, 1] (the 1x1 blocks' strided convs end at 1x1 already)."""
        x = self.convs(features)
        return self.output[0](x) if self.kernel_size == 3 else x

    def offsets(self, outputs: torch.Tensor) -> torch.Tensor:
        """The output layer's result [B, out*in] (or [B, out*in, 1, 1]) as offsets [B, out, in, k, k]."""
        x = outputs.reshape(-1, self.out_channels, self.in_channels, 1, 1)
        k = self.kernel_size
        return x if k == 1 else x.expand(-1, -1, -1, k, k)

    def extra_repr(self) -> str:
        return f"offsets=[{self.out_channels}, {self.in_channels}, {self.kernel_size}, {self.kernel_size}]"


def one_by_one_output(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 conv with up to 131072 output channels applied to [B, C, 1, 1] features, as a matrix product.

    The same values as the conv (float rounding aside), in the form that streams the weights (up to 256 MiB a
    layer) once; gradients flow as through the conv. Features that are not 1x1 (other spatial configs) keep the conv.
    Returns [B, out] for 1x1 features, else the conv's [B, out, H, W].
    """
    if x.shape[2:] != (1, 1):
        return conv(x)
    flat = x.reshape(x.shape[0], x.shape[1])
    weight = conv.weight.view(conv.weight.shape[0], conv.weight.shape[1])
    if conv.bias is None:
        return torch.mm(weight, flat.t()).t()
    return torch.addmm(conv.bias.unsqueeze(1), weight, flat.t()).t()


class SeparableBlock(nn.Module):
    """Official SeparableBlock: a rank-structured [B, out, in, k, k] kernel from a 512-d feature."""

    def __init__(self,
                 input_size: int,               # feature width
                 kernel_channels_in: int,       # input channels of the kernels it predicts
                 kernel_channels_out: int,      # output channels of the kernels it predicts
                 kernel_size: int,              # kernel size
                 ):
        super().__init__()
        self.input_size, self.k = input_size, kernel_size
        self.c_in, self.c_out = kernel_channels_in, kernel_channels_out
        self.make_kernel_in = nn.Linear(input_size, kernel_size * kernel_size * kernel_channels_in)
        self.make_kernel_out = nn.Linear(input_size, kernel_size * kernel_size * kernel_channels_out)
        self.kernel_linear_in = nn.Linear(kernel_channels_in, kernel_channels_in)
        self.kernel_linear_out = nn.Linear(kernel_channels_out, kernel_channels_out)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        f = features.reshape(-1, self.input_size)
        k_in = self.make_kernel_in(f).view(-1, self.k, self.k, 1, self.c_in)
        k_out = self.make_kernel_out(f).view(-1, self.k, self.k, self.c_out, 1)
        kernel = torch.matmul(k_out, k_in)                                   # [B, k, k, out, in]
        kernel = self.kernel_linear_in(kernel).permute(0, 1, 2, 4, 3)        # [B, k, k, in, out]
        kernel = self.kernel_linear_out(kernel)
        return kernel.permute(0, 4, 3, 1, 2)                                 # [B, out, in, k, k]


class RefinementBlockSeparable(nn.Module):
    """Non-shared layer of the separable variant: a SeparableBlock kernel (3x3 layers) or a 1x1 conv (ToRGB)."""

    def __init__(self,
                 out_channels: int,         # output channels of the generator layer it refines
                 in_channels: int,          # input channels of that layer
                 kernel_size: int,          # that layer's kernel size (3 or 1)
                 n_channels: int = 512,     # backbone feature channels
                 inner_c: int = 256,        # width of the strided convs
                 spatial: int = 16,         # backbone feature map size
                 out_c: int = 512,          # channels before the output layer
                 ):
        super().__init__()
        self.out_channels, self.in_channels, self.kernel_size = out_channels, in_channels, kernel_size
        self.convs = _strided_convs(n_channels, inner_c, out_c, int(math.log2(spatial)) - 2, first_stride=2)
        if kernel_size == 1:
            self.output = nn.Sequential(nn.Conv2d(out_c, in_channels * out_channels, kernel_size=1))
        else:
            self.output = nn.Sequential(SeparableBlock(out_c, in_channels, out_channels, kernel_size))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.output(self.convs(features))
        if self.kernel_size == 1:
            x = x.view(-1, self.out_channels, self.in_channels, 1, 1)
        return x


class HyperNetwork(nn.Module):
    """Official SharedWeightsHyperNetResNet / ...Separable.

    forward: [B, 6, 256, 256] (image, reconstruction; cars 192x256) -> {layer name: [B, out, in, k, k]}.
    """

    def __init__(self, config: HyperNetConfig):
        super().__init__()
        if config.variant not in VARIANTS:
            raise ValueError(f"hypernetwork variant must be one of {VARIANTS}, got {config.variant!r}")
        self.config = config
        # Tiny test models shrink every width with the generator; real models have divisor 1.
        d = config.generator.channel_divisor
        width = 512 // d
        self.conv1 = nn.Conv2d(config.input_nc, 64 // d, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64 // d)
        self.relu = nn.PReLU(64 // d)
        self.body = resnet34_body(d)
        self.shared_weight_hypernet = SharedWeightsHypernet(width, width, width)
        table = modulated_layer_table(config.generator)
        self.layer_names = [name for name, *_ in table]
        blocks: list[nn.Module | None] = []
        for idx, (_, out_ch, in_ch, k) in enumerate(table):
            if idx not in config.tuned:
                blocks.append(None)
            elif idx in SHARED_LAYERS:
                blocks.append(HyperRefinementBlock(width, 128 // d, config.spatial, width))
            elif config.variant == "shared":
                blocks.append(RefinementBlock(out_ch, in_ch, k, width, 256 // d, config.spatial, width))
            else:
                blocks.append(RefinementBlockSeparable(out_ch, in_ch, k, width, 256 // d, config.spatial, width))
        self.refinement_blocks = nn.ModuleList(blocks)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """[B, input_nc, H, W] -> backbone features [B, 512, H/16, W/16]."""
        return self.body(self.relu(self.bn1(self.conv1(x))))

    def extra_repr(self) -> str:
        return (f"variant={self.config.variant!r}, input_nc={self.config.input_nc}, "
                f"tuned_layers={len(self.config.tuned)}")

    @full_float32
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """[B, input_nc, H, W] (image, reconstruction) -> {layer name: offsets [B, out, in, k, k]}, layer order."""
        feats = self.features(x)
        batch = x.shape[0]
        out: dict[str, torch.Tensor] = {}
        shared_names, shared_codes = [], []
        for name, block in self.tuned_blocks():
            if isinstance(block, HyperRefinementBlock):
                shared_names.append(name)
                shared_codes.append(block(feats))
            else:
                out[name] = block(feats)
        if shared_codes:
            # One call for all shared layers: w2 is 512 MiB, so it is streamed once instead of 9 times. Each row's
            # result is the same as in a call of its own.
            kernels = self.shared_weight_hypernet(torch.cat(shared_codes, 0))
            out.update(zip(shared_names, kernels.split(batch)))
        return {name: out[name] for name in self.layer_names if name in out}

    def tuned_blocks(self) -> list[tuple[str, nn.Module]]:
        """(generator layer name, refinement block) of every tuned layer, in layer order."""
        return [(self.layer_names[i], block) for i, block in enumerate(self.refinement_blocks) if block is not None]
