"""The inference plan: every choice the engine makes for the models of one device, decided once per call.

The rules follow the device, its instruction set, the dtype and tensor shapes, never a timing taken at run time, so
one machine always computes the same bytes. docs/speed.md gives the measurements behind each rule.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

PREVIEW_SIZE = 256                  # fast mode renders the iterations before the last at this size (hypernet input)
PER_SAMPLE_MIN_AREA = 256 * 256     # CPU batches: blocks with outputs this large run one sample at a time
STRIP_MIN_BYTES = 32 * 2 ** 20      # glibc's largest dynamic mmap threshold: smaller maps are reused from the heap
STRIP_BYTES = 16 * 2 ** 20          # largest feature buffer of one strip
ROW_BLOCK = 16                      # rows of w2 per block of the "row_blocks" first product
ROW_BLOCKS_MAX_ROWS = 24            # z rows up to which the blocks pay (9 shared layers x batch 2)
FIRST_PRODUCT_FORMS = ("addmm", "tall_skinny", "row_blocks")


@dataclass(frozen=True)
class InferencePlan:
    """How the engine runs the networks on one device (see `plan_inference`)."""

    device: torch.device                # where the models live
    dtype: torch.dtype                  # the models' dtype; inputs are cast to it and outputs come back in it
    feature_format: torch.memory_format     # generator features: channels-last on CPU, whose oneDNN kernels run
                                            # transposed convs and FIR filters fastest so; NCHW on GPUs
    conv_weight_format: torch.memory_format     # the encoders' spatial conv weights (nn/engine/layout.py): the same
                                                # rule, so that their activations stay channels-last on CPU
    per_sample_min_area: int | None     # batches: blocks with outputs of this many pixels or more run one sample
                                        # at a time (grouped convs with groups=B scale badly on CPU); None: never
    strip_min_bytes: int | None         # one sample: blocks whose output maps take this many bytes or more run in
                                        # horizontal strips (nn/engine/strips.py); None: whole blocks
    strip_bytes: int                    # largest feature buffer of one strip
    separable_skips: bool               # RGB skips up-sampled by two 1-D passes (oneDNN runs the 3-channel 2-D
                                        # filter poorly) instead of one 2-D FIR filter
    threads: int                        # torch threads: one sample's hypernetwork output layers run as this many
                                        # row groups (MKL runs a matrix-vector product on one core); 1 = one product
    first_product: str                  # the shared hypernet's z @ w2 form: "tall_skinny" (AVX-512 MKL),
                                        # "row_blocks" (other CPUs, few rows), "addmm" (elsewhere)
    low_precision: torch.dtype | None   # fast mode: bf16 copies of both networks where bf16 arithmetic is native
    int8_products: bool                 # fast mode: int8 copies of the hypernetwork's big matrices (other CPUs)
    preview_size: int | None            # fast mode: render the iterations before the last at this size

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def first_product_form(self, rows: int) -> str:
        """The form of z [rows, K] @ w2 (the shared hypernet's first product) under this plan."""
        if self.first_product == "row_blocks" and rows > ROW_BLOCKS_MAX_ROWS:
            return "addmm"              # from about 36 rows a single product streams w2 as fast
        return self.first_product

    def output_groups(self, rows: int, batch: int) -> int:
        """How many row groups one sample's output-layer product [rows, K] @ [K] is split into (1: don't)."""
        if batch != 1 or not self.on_cpu:
            return 1                    # two samples or more make it a matrix product, threaded already
        groups = min(self.threads, rows)
        while rows % groups:
            groups -= 1
        return groups

    def first_per_sample_block(self, batch: int, n_blocks: int) -> int:
        """The first up-sampling block (output 2**(b+3) px) that runs one sample at a time; n_blocks: none."""
        if batch == 1 or self.per_sample_min_area is None:
            return n_blocks
        return next((b for b in range(n_blocks) if (2 ** (b + 3)) ** 2 >= self.per_sample_min_area), n_blocks)

    def block_in_strips(self, batch: int, out_channels: int, out_height: int, out_width: int, itemsize: int) -> bool:
        """Whether a block with this output runs in strips (one sample whose maps reach strip_min_bytes)."""
        if batch != 1 or self.strip_min_bytes is None:
            return False
        return out_channels * out_height * out_width * itemsize >= self.strip_min_bytes


def plan_inference(device: torch.device, dtype: torch.dtype, fast: bool = False,
                   size: int | None = None) -> InferencePlan:
    """The plan for models on `device` in `dtype`; fast: fast mode for a `size`-px generator (see inversion.refine)."""
    device = torch.device(device)
    cpu = device.type == "cpu"
    low = torch.bfloat16 if fast and dtype == torch.float32 and bf16_supported(device) else None
    return InferencePlan(
        device=device, dtype=dtype,
        feature_format=torch.channels_last if cpu else torch.contiguous_format,
        conv_weight_format=torch.channels_last if cpu else torch.contiguous_format,
        per_sample_min_area=PER_SAMPLE_MIN_AREA if cpu else None,
        strip_min_bytes=STRIP_MIN_BYTES if cpu else None,
        strip_bytes=STRIP_BYTES,
        separable_skips=cpu,
        threads=torch.get_num_threads() if cpu else 1,
        first_product=_first_product_rule(device),
        low_precision=low,
        int8_products=bool(fast and low is None and dtype == torch.float32 and int8_supported(device)),
        preview_size=PREVIEW_SIZE if fast and size is not None and size > PREVIEW_SIZE else None,
    )


def _first_product_rule(device: torch.device) -> str:
    if device.type != "cpu":
        return "addmm"
    return "tall_skinny" if "AVX512" in torch.backends.cpu.get_cpu_capability() else "row_blocks"


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 convolutions and products are fast on `device`: CUDA GPUs with bf16 support, CPUs whose oneDNN
    has native bf16 (AVX-512 BF16 or AMX). On other CPUs bf16 is emulated and many times slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return False


def int8_supported(device: torch.device) -> bool:
    """PyTorch's dynamic int8 linear runs on CPUs with the fbgemm (x86) or qnnpack (ARM) engine."""
    engines = torch.backends.quantized.supported_engines
    return device.type == "cpu" and any(e in engines for e in ("fbgemm", "x86", "qnnpack"))
