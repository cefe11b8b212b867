"""Device and precision choice: CUDA, then MPS, then CPU; float32 unless half precision is asked for on a GPU."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None/"auto" -> cuda if available, else mps, else cpu; anything else is checked to exist."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but this PyTorch build sees no CUDA GPU; use 'cpu' or 'auto'")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but MPS is not available; use 'cpu' or 'auto'")
    return device


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None -> float32. Half precision (float16/bfloat16) is for GPUs; on CPU it is refused with a hint."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(DTYPES))}")
        dtype = DTYPES[dtype]
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
    if dtype != torch.float32 and device.type == "cpu":
        raise ValueError(f"{dtype} is only supported on a GPU (cuda or mps); on CPU use float32")
    return dtype


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_KEEP_FREED_BYTES = 2 ** 31 - 1  # freed heap memory up to this stays mapped (mallopt takes an int)


def keep_freed_memory() -> bool:
    """Stop glibc from returning large freed buffers to the OS between passes (CLI start-up only).

    glibc serves every allocation above its mmap threshold (32 MiB at most) with a fresh mmap and unmaps it on free,
    so each generator pass page-faults its 1024-px feature maps back in (millions of minor faults, seconds of system
    time). Serving them from the heap and not trimming it lets the next pass reuse the same pages. This changes
    process-wide allocator behaviour, so only our own command line calls it: inside ComfyUI (a host process we are a
    guest in) nothing is changed. Returns False where it does not apply (not glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False                    # musl, macOS, Windows: no mallopt, their allocators behave differently
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES))


@contextmanager
def ieee_float32(device: torch.device) -> Iterator[None]:
    """Full float32 arithmetic for the block on a CUDA device: TF32 off for cuBLAS products and cuDNN convolutions.

    PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by default on Ampere and later GPUs, which
    moves a 1024-px render by ~1e-3 from the float32 result the official code gives on the same weights; exact mode
    promises float rounding. The process-wide flags are restored afterwards, so a host (ComfyUI) keeps its own
    choice. Half-precision models are unaffected; other devices: nothing to do.
    """
    if device.type != "cuda":
        yield
        return
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "fp32_precision"):
        # The per-backend API (PyTorch >= 2.9); the legacy allow_tf32 flags must not be mixed with it.
        saved = matmul.fp32_precision, conv.fp32_precision
        matmul.fp32_precision = conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.fp32_precision = saved
        return
    saved = matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def full_float32(forward: Callable[..., T]) -> Callable[..., T]:
    """Decorates a module's forward to run under `ieee_float32` on the module's own device."""
    @functools.wraps(forward)
    def wrapper(module: torch.nn.Module, *args, **kwargs) -> T:
        param = next(module.parameters(), None)
        if param is None or param.device.type != "cuda":
            return forward(module, *args, **kwargs)
        with ieee_float32(param.device):
            return forward(module, *args, **kwargs)
    return wrapper
