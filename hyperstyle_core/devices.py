"""Device and precision choice: CUDA, then MPS, then CPU; float32 unless half precision is asked for on a GPU."""
from __future__ import annotations

import ctypes
import ctypes.util

import torch

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
