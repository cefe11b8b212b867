"""The HyperStyle hypernetwork exactly as the official code has it (not as the paper draws it).

ResNet34 backbone on the 6-channel (image, reconstruction) input -> 16x16x512 features; one refinement block per
tuned generator layer. Layers in SHARED_LAYERS use a HyperRefinementBlock whose 512-d code goes through one shared
hypernet predicting a full 3x3 offset per kernel entry; the other 3x3 layers predict one offset per (out, in)
channel pair, repeated over the 3x3 kernel. See ../shared/fixtures/official/MANIFEST.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import torch
from torch import nn

from ..devices import full_float32
from .stylegan2 import EqualLinear, GeneratorConfig, modulated_layer_table

Product = Callable[[torch.Tensor], torch.Tensor]     # [B, in] -> [B, out]: a weight matrix applied (fast mode)


class LowPrecisionProducts(Protocol):
    """The hypernetwork's big weight matrices in a cheaper precision, cast once (nn/fast.py makes them)."""

    def shared(self) -> Product | None:
        """z [n, 512] -> the shared hypernet's first product plus b2, [n, 512*512]; None keeps it exact."""

    def output(self, name: str) -> Product | None:
        """Pooled features [B, 512] -> layer `name`'s 1x1 output layer plus bias; None keeps it exact."""


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

    def __init__(self, in_c: int, out_c: int, stride: int):
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


# The shared hypernet's first product z [n, 512] @ w2 [512, 512*512] streams the 512 MiB w2 for a few rows of z: it
# is memory-bound, and how fast it streams depends on the BLAS kernel the form selects. Measured (issue 14):
# - AVX-512 MKL: the tall-skinny mm(w2^T, z^T) took 46 ms against 166-170 ms for addmm;
# - AVX2 AMD EPYC: tall-skinny was ten times slower than addmm (MKL's kernel for 9 columns), but addmm over blocks of
#   16 rows of w2 (16 MB each, accumulated into the result) took 65-86 ms against 171-208 ms for n = 9 (batch 1) and
#   105 against 190 ms for n = 18; from n = 36 the single addmm is faster.
# Every form gives the same values up to float rounding (another summation order). The choice follows the CPU's
# instruction set and the row count, never a timing at run time, so one machine always computes the same bytes.
# Training (where the parity of gradients was measured with addmm) and other devices keep addmm.
FIRST_PRODUCT_FORMS = ("addmm", "tall_skinny", "row_blocks")
ROW_BLOCK = 16              # rows of w2 per block of the "row_blocks" form
ROW_BLOCKS_MAX_ROWS = 24    # z rows up to which the blocks pay


def _cpu_inference(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """A product on CPU that autograd does not record: where the CPU-only forms below may replace addmm."""
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    return x.device.type == "cpu" and not needs_grad


def first_product_form(z: torch.Tensor, w2: torch.Tensor) -> str:
    """Which form computes z @ w2 + b2 here (see FIRST_PRODUCT_FORMS and the measurements above)."""
    if not _cpu_inference(z, w2):
        return "addmm"
    if "AVX512" in torch.backends.cpu.get_cpu_capability():
        return "tall_skinny"
    return "row_blocks" if z.shape[0] <= ROW_BLOCKS_MAX_ROWS else "addmm"


def first_product(z: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor, form: str) -> torch.Tensor:
    """z [n, K] @ w2 [K, N] + b2 [N] -> [n, N] in the given form."""
    if form == "tall_skinny":
        return torch.mm(w2.t(), z.t()).t().contiguous().add_(b2)
    if form == "row_blocks":
        out = b2.expand(z.shape[0], -1).clone()
        for k in range(0, w2.shape[0], ROW_BLOCK):
            out.addmm_(z[:, k:k + ROW_BLOCK], w2[k:k + ROW_BLOCK])
        return out
    if form != "addmm":
        raise ValueError(f"form must be one of {', '.join(FIRST_PRODUCT_FORMS)}, got {form!r}")
    return torch.addmm(b2, z, w2)       # addmm fuses the bias add: one pass less over the result


class SharedWeightsHypernet(nn.Module):
    """z [B, 512] -> full 3x3 kernel offsets [B, 512, 512, 3, 3] (official SharedWeightsHypernet, mode=None)."""

    def __init__(self, z_dim: int = 512, in_size: int = 512, out_size: int = 512, f_size: int = 3):
        super().__init__()
        self.z_dim, self.in_size, self.out_size, self.f_size = z_dim, in_size, out_size, f_size
        self.w1 = nn.Parameter(torch.zeros(z_dim, out_size * f_size * f_size))
        self.b1 = nn.Parameter(torch.zeros(out_size * f_size * f_size))
        self.w2 = nn.Parameter(torch.zeros(z_dim, in_size * z_dim))
        self.b2 = nn.Parameter(torch.zeros(in_size * z_dim))

    def forward(self, z: torch.Tensor, low_precision_product: Product | None = None) -> torch.Tensor:
        """low_precision_product replaces `z @ w2 + b2` (fast mode's int8 copy of the 512 MiB w2)."""
        batch = z.shape[0]
        h_in = self._first(z, low_precision_product)
        h_final = torch.addmm(self.b1, h_in, self.w1)           # [B*in, out*9] in memory ...
        # ... reinterpreted as [B, out, in, 3, 3] exactly as the official view() does.
        return h_final.view(batch, self.out_size, self.in_size, self.f_size, self.f_size)

    def kernels_per_group(self, z: torch.Tensor, n_groups: int,
                          low_precision_product: Product | None = None) -> list[torch.Tensor]:
        """`forward` for z made of n_groups equal groups of codes (one per layer), each group's kernels
        [B, out, in, 3, 3] a tensor of its own: the same rows of the same products (inference).

        At batch 1 each group's result is 9 MiB, below glibc's largest mmap threshold, so each pass reuses heap memory
        where one [9*512, 4608] result (85 MB) was mapped and page-faulted in afresh on every pass."""
        h_in = self._first(z, low_precision_product)
        batch = z.shape[0] // n_groups
        rows = batch * self.in_size
        return [torch.addmm(self.b1, h_in[i * rows:(i + 1) * rows], self.w1)
                .view(batch, self.out_size, self.in_size, self.f_size, self.f_size) for i in range(n_groups)]

    def _first(self, z: torch.Tensor, low_precision_product: Product | None) -> torch.Tensor:
        """z [N, z_dim] -> (z @ w2 + b2) viewed as [N*in, z_dim], the rows of the second product."""
        if low_precision_product is not None:
            h = low_precision_product(z)
        else:
            h = first_product(z, self.w2, self.b2, first_product_form(z, self.w2))
        return h.view(z.shape[0] * self.in_size, self.z_dim)


class HyperRefinementBlock(nn.Module):
    """16x16 features -> z [B, 512] for the shared hypernet (which is held by the network, not by the block)."""

    def __init__(self, n_channels: int = 512, inner_c: int = 128, spatial: int = 16, out_c: int = 512):
        super().__init__()
        self.out_c = out_c
        self.convs = _strided_convs(n_channels, inner_c, out_c, int(math.log2(spatial)) - 1, first_stride=1)
        self.linear = EqualLinear(out_c, out_c)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(self.convs(features).reshape(-1, self.out_c))


class RefinementBlock(nn.Module):
    """Non-shared layer: one offset per (out, in) channel pair (3x3 layers), or a full 1x1 kernel (ToRGB)."""

    def __init__(self, out_channels: int, in_channels: int, kernel_size: int, n_channels: int = 512,
                 inner_c: int = 256, spatial: int = 16, out_c: int = 512):
        super().__init__()
        self.out_channels, self.in_channels, self.kernel_size = out_channels, in_channels, kernel_size
        n_pools = int(math.log2(spatial)) - (2 if kernel_size == 3 else 1)
        self.convs = _strided_convs(n_channels, inner_c, out_c, n_pools - 1, first_stride=2)
        conv = nn.Conv2d(out_c, in_channels * out_channels, kernel_size=1)
        self.output = nn.Sequential(conv) if kernel_size == 1 else nn.Sequential(nn.AdaptiveAvgPool2d((1, 1)), conv)

    def forward(self, features: torch.Tensor, output_product: Product | None = None) -> torch.Tensor:
        """output_product replaces the 1x1 output layer (fast mode's int8 copy of its weights)."""
        x = self.convs(features)
        if self.kernel_size == 3:
            x = self.output[0](x)                                     # average pool to 1x1
        x = one_by_one_output(x, self.output[-1], output_product)
        x = x.view(-1, self.out_channels, self.in_channels, 1, 1)
        k = self.kernel_size
        return x if k == 1 else x.expand(-1, -1, -1, k, k)


def one_by_one_output(x: torch.Tensor, conv: nn.Conv2d, product: Product | None = None) -> torch.Tensor:
    """A 1x1 conv with up to 131072 output channels applied to [B, C, 1, 1] features, as a matrix product.

    The weights (up to 256 MiB a layer) are streamed once; the tall-skinny `addmm(bias, W, x^T)` form is several
    times faster than the conv at batch 4 and as fast at batch 1 (autograd-correct; values within float rounding).
    Features that are not 1x1 (other spatial configs) keep the conv.
    """
    if x.shape[2:] != (1, 1):
        return conv(x)
    flat = x.reshape(x.shape[0], x.shape[1])
    if product is not None:
        return product(flat)
    weight = conv.weight.view(conv.weight.shape[0], conv.weight.shape[1])
    groups = matrix_vector_groups(weight, flat)
    if groups > 1:
        return matrix_vector_in_groups(weight, flat, conv.bias, groups)
    if conv.bias is None:
        return torch.mm(weight, flat.t()).t()
    return torch.addmm(conv.bias.unsqueeze(1), weight, flat.t()).t()


def matrix_vector_groups(weight: torch.Tensor, flat: torch.Tensor) -> int:
    """How many row groups `matrix_vector_in_groups` splits a single sample's product into (1: don't).

    One sample's product is a matrix-vector product, which MKL runs on one thread; a batch of equal row groups, one
    per torch thread, streams the weights on every core: a 256 MiB layer took 12 ms instead of 26 ms on the 2-core
    AVX2 CPU (issue 14). Two or more samples make it a matrix product, which is threaded already (and was not faster
    in groups). CPU inference only; values differ from addmm's by float rounding (another summation order).
    """
    if flat.shape[0] != 1 or not _cpu_inference(flat, weight):
        return 1
    groups = min(torch.get_num_threads(), weight.shape[0])
    while weight.shape[0] % groups:
        groups -= 1
    return groups


def matrix_vector_in_groups(weight: torch.Tensor, flat: torch.Tensor, bias: torch.Tensor | None,
                            groups: int) -> torch.Tensor:
    """weight [N, K] @ flat [1, K]^T (+ bias [N]) -> [1, N], as one batched product of `groups` row groups."""
    rows, k = weight.shape[0] // groups, weight.shape[1]
    stacked = weight.view(groups, rows, k)
    vector = flat.t().expand(groups, k, 1)
    if bias is None:
        return torch.bmm(stacked, vector).view(1, -1)
    return torch.baddbmm(bias.view(groups, rows, 1), stacked, vector).view(1, -1)


class SeparableBlock(nn.Module):
    """Official SeparableBlock: a rank-structured [B, out, in, k, k] kernel from a 512-d feature."""

    def __init__(self, input_size: int, kernel_channels_in: int, kernel_channels_out: int, kernel_size: int):
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
    def __init__(self, out_channels: int, in_channels: int, kernel_size: int, n_channels: int = 512,
                 inner_c: int = 256, spatial: int = 16, out_c: int = 512):
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
        return self.body(self.relu(self.bn1(self.conv1(x))))

    @full_float32
    def forward(self, x: torch.Tensor, products: LowPrecisionProducts | None = None) -> dict[str, torch.Tensor]:
        """products: fast mode's low-precision copies of the big matrices (None = exact, the default)."""
        feats = self.features(x)
        batch = x.shape[0]
        out: dict[str, torch.Tensor] = {}
        shared_names, shared_codes = [], []
        for idx, block in enumerate(self.refinement_blocks):
            if block is None:
                continue
            if isinstance(block, HyperRefinementBlock):
                shared_names.append(self.layer_names[idx])
                shared_codes.append(block(feats))
            elif isinstance(block, RefinementBlock):
                name = self.layer_names[idx]
                out[name] = block(feats, None if products is None else products.output(name))
            else:
                out[self.layer_names[idx]] = block(feats)
        if shared_codes:
            # One call for all shared layers: w2 is 512 MB, so streaming it once instead of 9 times is the
            # difference between a memory-bound and a compute-bound pass. Row results are the same per code.
            codes = torch.cat(shared_codes, 0)
            product = None if products is None else products.shared()
            if torch.is_grad_enabled():
                kernels = self.shared_weight_hypernet(codes, product)
                per_layer = [kernels[i * batch:(i + 1) * batch] for i in range(len(shared_names))]
            else:
                per_layer = self.shared_weight_hypernet.kernels_per_group(codes, len(shared_names), product)
            out.update(zip(shared_names, per_layer))
        return {name: out[name] for name in self.layer_names if name in out}
