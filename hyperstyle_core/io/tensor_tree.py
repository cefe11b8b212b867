"""Nested Python state (dicts, lists, tuples, numbers, strings, tensors) as one safetensors file, without pickle.

    write_tensor_tree("train_state.safetensors", {"optimizer": opt.state_dict(), "step": 12}, "training_state")
    state = read_tensor_tree("train_state.safetensors", "training_state", hint="start a new run")

The tensors go into the file as tensors (`t/0`, `t/1`, ...); the structure goes into the metadata as JSON in which a
tensor is {"__tensor__": "t/0"}, a tuple {"__tuple__": [...]} and a dict {"__dict__": [[key, value], ...]} (its keys
keep their types: an optimizer's state is keyed by int). Reading builds nothing but these types, so a planted file
can at worst hold wrong numbers, never run code.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .formats import read_format_metadata, write_safetensors

__all__ = ["write_tensor_tree", "read_tensor_tree"]

TREE_KEY = "tree"
_SCALARS = (bool, int, float, str, type(None))


def write_tensor_tree(path: str | os.PathLike, tree: Any, name: str) -> Path:
    """Write `tree` atomically as a safetensors file of format `name` (a key of io.formats.FORMATS)."""
    tensors: dict[str, torch.Tensor] = {}
    encoded = _encode(tree, tensors)
    return write_safetensors(path, tensors, name, {TREE_KEY: json.dumps(encoded, separators=(",", ":"))})


def read_tensor_tree(path: str | os.PathLike, name: str, hint: str) -> Any:
    """The tree `write_tensor_tree` wrote. ValueError (with `hint`, what to do) for any other or damaged file."""
    path = Path(path)
    metadata = read_format_metadata(path, name, hint)
    try:
        encoded = json.loads(metadata[TREE_KEY])
        with safe_open(str(path), framework="pt", device="cpu") as f:
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        return _decode(encoded, tensors)
    except (KeyError, ValueError, TypeError, RecursionError) as e:
        raise ValueError(f"{path} is damaged ({type(e).__name__}: {e}); {hint}") from None


def _encode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t/{len(tensors)}"
        tensors[key] = obj.detach().cpu().clone()
        return {"__tensor__": key}
    if isinstance(obj, dict):
        if not all(isinstance(k, (str, int)) for k in obj):
            raise ValueError("only dicts keyed by str or int can be stored")
        return {"__dict__": [[k, _encode(v, tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [_encode(v, tensors) for v in obj]
    if isinstance(obj, _SCALARS):
        return obj
    raise ValueError(f"a {type(obj).__name__} cannot be stored in a tensor tree")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        if set(obj) == {"__tuple__"}:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if set(obj) == {"__dict__"}:
            return {_key(k): _decode(v, tensors) for k, v in obj["__dict__"]}
        raise ValueError(f"unexpected entry {sorted(obj)[:3]}")
    if isinstance(obj, _SCALARS):
        return obj
    raise ValueError(f"unexpected value {type(obj).__name__}")


def _key(k: Any) -> str | int:
    if isinstance(k, (str, int)) and not isinstance(k, bool):
        return k
    raise ValueError(f"unexpected dict key {k!r}")
