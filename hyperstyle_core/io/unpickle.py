"""Restricted readers for pickled files from others: nothing outside an explicit allow-list is ever unpickled.

Official `.pt` checkpoints go through `torch.load(weights_only=True)` with `ALLOWED_GLOBALS`.
`load_numpy_arrays_pickle` reads pickles of numpy arrays (StyleCLIP's S_mean_std) and builds nothing else.
`read_torchscript_tensors` reads the tensors of a TorchScript archive (OpenAI's CLIP ViT-B-32.pt) without
`torch.jit.load`, which has no safe mode.
"""
from __future__ import annotations

import argparse
import codecs
import io
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO, Mapping, Sequence

import numpy as np
import torch

# Objects a training checkpoint may carry besides tensors and builtins (rosinality keeps its argparse args).
ALLOWED_GLOBALS = [argparse.Namespace]
# Containers nest 3 levels in the official files; far deeper nesting only comes from crafted files.
MAX_NESTING = 64


def check_tensor_storage(t: torch.Tensor, where: str) -> None:
    """Refuse a tensor whose view holds more elements than its storage (e.g. stride 0 over 2**31 elements).

    Such a tensor costs nothing until it is copied; `.contiguous()`, a dtype change or writing it out would then
    allocate far more memory than the file holds. Raises ValueError naming `where`.
    """
    stored = t.untyped_storage().nbytes() // max(1, t.element_size())
    if t.numel() > stored:
        raise ValueError(f"{where}: tensor of shape {list(t.shape)} (strides {list(t.stride())}) views "
                         f"{t.numel()} elements of a storage that holds {stored}; a file's tensors must hold their "
                         f"own data. The file is damaged or crafted: use the original download")


def check_loaded_tensors(obj: Any, name: str) -> None:
    """`check_tensor_storage` for every tensor in a loaded checkpoint (dicts, lists, tuples, argparse args).

    Raises:
        ValueError naming `name` and the key path of the first bad tensor, or for containers nested deeper than
        MAX_NESTING levels.
    """
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    seen: set[int] = set()      # shared sub-containers are walked once (pickle memo can make a DAG or a cycle)
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, torch.Tensor):
            check_tensor_storage(item, f"{name}: {where or 'the tensor'}")
            continue
        if isinstance(item, argparse.Namespace):
            item = vars(item)
        if not isinstance(item, (Mapping, list, tuple, set)) or id(item) in seen:
            continue
        if depth >= MAX_NESTING:
            raise ValueError(f"{name}: containers are nested more than {MAX_NESTING} levels deep (at "
                             f"{where[:200]}); no checkpoint is built like this. Use the original download")
        seen.add(id(item))
        children = item.items() if isinstance(item, Mapping) else enumerate(item)
        stack.extend((value, f"{where}[{str(key)[:80]!r}]" if where else str(key)[:80], depth + 1)
                     for key, value in children)


def read_official_checkpoint(path: str | os.PathLike) -> Any:
    """torch.load with weights_only=True and an explicit allow-list (never a plain unpickle)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    obj = _torch_load_safely(path)
    # Checked before anything is copied: loading maps storages and builds views, it never expands them.
    check_loaded_tensors(obj, path.name)
    return obj


def _torch_load_safely(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals(ALLOWED_GLOBALS):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as e:
                if "mmap" not in str(e):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure becomes one clear message
        if isinstance(e, (FileNotFoundError, MemoryError)):
            raise
        raise ValueError(f"Cannot read {path.name} as a PyTorch checkpoint with the safe loader: "
                         f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}. It may be truncated "
                         f"(download it again) or contain objects outside the allow-list "
                         f"({', '.join(g.__module__ + '.' + g.__qualname__ for g in ALLOWED_GLOBALS)}).") from None


# --------------------------------------------------------------------------------------------- numpy array pickles

def _numpy_array_globals() -> dict[tuple[str, str], Any]:
    """The callables numpy's array pickles reference (protocols 2-5, numpy 1.x and 2.x module paths)."""
    core = getattr(np, "_core", None) or np.core
    found = {"_reconstruct": core.multiarray._reconstruct, "scalar": core.multiarray.scalar,
             "_frombuffer": core.numeric._frombuffer}
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
                                           ("_codecs", "encode"): codecs.encode}  # protocol 2 writes bytes this way
    for package in ("numpy.core", "numpy._core"):
        allowed[(f"{package}.multiarray", "_reconstruct")] = found["_reconstruct"]
        allowed[(f"{package}.multiarray", "scalar")] = found["scalar"]
        allowed[(f"{package}.numeric", "_frombuffer")] = found["_frombuffer"]  # protocol 5
    return allowed


class _NumpyArrayUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays (and lists/tuples of them) and nothing else."""

    def __init__(self, file: BinaryIO, what: str, hint: str):
        super().__init__(file)
        self.what, self.hint = what, hint

    def find_class(self, module: str, name: str) -> Any:
        allowed = _numpy_array_globals()
        if (module, name) in allowed:
            return allowed[(module, name)]
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: {self.what} may only contain numpy arrays. "
                                     f"{self.hint}".rstrip())

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError(f"refused a persistent id: {self.what} may only contain numpy arrays")


def load_numpy_arrays_pickle(file: str | os.PathLike | BinaryIO, what: str = "this pickle", hint: str = "") -> Any:
    """Unpickle numpy arrays (and lists, tuples, dicts and scalars holding them) without running other code.

    Only numpy's array reconstruction is admitted; any other global or a persistent id raises
    `pickle.UnpicklingError` ("refused to load <module>.<name>: <what> may only contain numpy arrays. <hint>").
    Other failures of a damaged file (EOFError, ValueError, ...) propagate as they are.

    Args:
        file: a path or a binary file object positioned at the pickle.
        what: the file as named in the refusal message, e.g. "an S statistics pickle".
        hint: what to use instead, appended to the refusal message.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as f:
            return _NumpyArrayUnpickler(f, what, hint).load()
    return _NumpyArrayUnpickler(file, what, hint).load()


# --------------------------------------------------------------------------------------------- TorchScript archives

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32, "HalfStorage": torch.float16, "BFloat16Storage": torch.bfloat16,
    "DoubleStorage": torch.float64, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _ScriptObject:
    """Stand-in for a TorchScript class instance: keeps the attribute state, runs no code."""

    def __init__(self, *args: Any):
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Sequence[int], stride: Sequence[int],
                    requires_grad: bool = False, hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    if not isinstance(storage, torch.Tensor):
        raise ValueError(f"TorchScript tensor without a storage ({type(storage).__name__})")
    dims = [offset, *size, *stride]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in dims):
        raise ValueError(f"TorchScript tensor has invalid size {size!r}, stride {stride!r} or offset {offset!r}")
    # Before as_strided: a stride-0 view of 2**31 elements over a 4-byte storage would be expanded by clone().
    if math.prod(size) > storage.numel():
        raise ValueError(f"TorchScript tensor of shape {list(size)} (strides {list(stride)}) views "
                         f"{math.prod(size)} elements of a storage that holds {storage.numel()}; the archive is "
                         f"damaged or crafted")
    return storage.as_strided(tuple(size), tuple(stride), offset)


MAX_TORCHSCRIPT_PICKLE_BYTES = 64 << 20     # CLIP ViT-L/14's data.pkl is under 1 MB


class _TorchScriptUnpickler(pickle.Unpickler):
    """Reads the tensors of a TorchScript archive's data.pkl; admits module stand-ins, storages and tensors only."""

    def __init__(self, file: io.BytesIO, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root, self.storages = archive, root, {}
        # torch.jit.save stores tensor data uncompressed, so a genuine archive unpacks to about its own size.
        self.unpacked, self.max_unpacked = 0, 4 * sum(i.compress_size for i in archive.infolist()) + (1 << 20)

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("__torch__.") or module == "__torch__":
            return _ScriptObject
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return dict
        raise pickle.UnpicklingError(f"refused to load {module}.{name} from a TorchScript archive: only module "
                                     f"attributes and tensors are read. Convert the weights to safetensors in a "
                                     f"trusted environment")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a TorchScript archive")
        _, stype, key, _location, numel = pid
        if key not in self.storages:
            name = f"{self.root}/data/{key}"
            try:
                info = self.archive.getinfo(name)
            except KeyError:
                raise ValueError(f"TorchScript archive lacks tensor storage data/{key}: the file is truncated") \
                    from None
            item = torch.empty((), dtype=stype.dtype).element_size()
            if not isinstance(numel, int) or info.file_size != numel * item:
                raise ValueError(f"TorchScript storage data/{key} has {info.file_size} bytes, expected {numel} x "
                                 f"{item}")
            self.unpacked += info.file_size
            if self.unpacked > self.max_unpacked:     # checked before decompressing: a zip bomb stops here
                raise ValueError(f"the tensors unpack to more than {self.max_unpacked} bytes, far more than the "
                                 f"archive holds; it is not a genuine TorchScript file")
            raw = self.archive.read(info)
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=stype.dtype) if raw else \
                torch.empty(0, dtype=stype.dtype)
        return self.storages[key]


def _collect_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor], depth: int = 0) -> None:
    if depth > 64:
        raise ValueError("TorchScript module tree is deeper than 64 levels")
    state = obj.state if isinstance(obj, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[prefix + str(key)] = value.clone()
        elif isinstance(value, _ScriptObject):
            _collect_tensors(value, f"{prefix}{key}.", out, depth + 1)


def _torchscript_root(archive: zipfile.ZipFile) -> str | None:
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) >= 3 and parts[1] == "code":
            return parts[0]
        if len(parts) == 2 and parts[1] == "constants.pkl":
            return parts[0]
    return None


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """True for a zip file laid out as a TorchScript archive (`<root>/code/...` or `<root>/constants.pkl`)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _torchscript_root(archive) is not None


def read_torchscript_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript archive by state-dict key, read without `torch.jit.load`.

    data.pkl is read with an unpickler that admits only module stand-ins (which keep their attributes and run no
    code), tensor storages and tensors; anything else raises `pickle.UnpicklingError`. A damaged archive raises
    ValueError.

    Returns:
        {"<submodule path>.<attribute>": tensor} in the module tree's order, dtypes as stored.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path.name} is not a TorchScript archive (not a zip file)")
    with zipfile.ZipFile(path) as archive:
        root = _torchscript_root(archive)
        if root is None:
            raise ValueError(f"{path.name} is a zip file but not a TorchScript archive (no code/ or constants.pkl)")
        try:
            info = archive.getinfo(f"{root}/data.pkl")
        except KeyError:
            raise ValueError(f"{path.name} is a TorchScript archive without data.pkl; it is corrupt") from None
        if info.file_size > MAX_TORCHSCRIPT_PICKLE_BYTES:
            raise ValueError(f"{path.name}: data.pkl unpacks to {info.file_size} bytes (a genuine one is a few MB); "
                             f"it is not a genuine TorchScript file")
        data = archive.read(info)
        try:
            obj = _TorchScriptUnpickler(io.BytesIO(data), archive, root).load()
        except pickle.UnpicklingError:
            raise
        except ValueError as e:
            raise ValueError(f"{path.name}: {e}") from None
        except Exception as e:
            raise ValueError(f"{path.name}: could not read the TorchScript tensors ({type(e).__name__}: {e})") \
                from None
    out: dict[str, torch.Tensor] = {}
    _collect_tensors(obj, "", out)
    return out
