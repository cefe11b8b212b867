"""Files of a training run: the trained HyperStyle model (`latest`, `best`) and the resume state.

The models are written in exactly the converted-file format (io.checkpoints), so `hs.load`, the nodes and
`hyperstyle run` read them directly; their `opts` metadata holds the training options and step. The resume state
(`train_state.safetensors`: tensors, with the structure as JSON, never pickled; `io.tensor_tree`) holds everything
else a killed run needs to continue the same loss curve: the trained tensors, the optimiser, the step and data
position, the best validation loss and the RNG states. Every file is written to a temporary name and renamed, so a
kill never leaves a half-written file.
"""
from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..io.formats import write_safetensors
from ..io.tensor_tree import read_tensor_tree, write_tensor_tree
from ..nn.configs import model_config
from ..nn.networks import HyperStyleModel

LATEST_FILE = "latest.safetensors"
BEST_FILE = "best.safetensors"
STATE_FILE = "train_state.safetensors"
STATE_VERSION = 1


def save_hyperstyle(model: HyperStyleModel, path: str | os.PathLike, opts: dict[str, Any],
                    source_name: str = "hyperstyle train") -> Path:
    """Write the model as a converted HyperStyle file (what `load` reads), with the training options as `opts`."""
    kind, config = model_config(model)
    tensors = {k: v.detach() for k, v in model.state_dict().items()}
    return write_safetensors(path, tensors, "checkpoint", {"kind": kind, "config": json.dumps(config),
                                                           "opts": json.dumps(opts, sort_keys=True),
                                                           "source_name": source_name, "source_sha256": ""})


@dataclass
class RunPosition:
    """Where a run stands: optimiser steps done, the next batch to read, the best validation loss so far."""
    step: int = 0
    epoch: int = 0
    batch: int = 0
    best_val_loss: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def trainable_tensors(model: HyperStyleModel, train_decoder: bool) -> dict[str, torch.Tensor]:
    """Every tensor training changes: the hypernet (parameters and BatchNorm statistics), plus the decoder."""
    parts = [("hypernet.", model.hypernet)] + ([("decoder.", model.decoder)] if train_decoder else [])
    return {prefix + k: v for prefix, module in parts for k, v in module.state_dict().items()}


def rng_states() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "python": random.getstate()}


def set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), float(cached)))
    random.setstate(states["python"])


def save_state(path: str | os.PathLike, model: HyperStyleModel, optimizer: torch.optim.Optimizer,
               position: RunPosition, options: dict[str, Any], scaler: torch.amp.GradScaler | None = None) -> Path:
    """Write the resume state atomically (tensors and plain values only, as a tensor tree)."""
    state = {"version": STATE_VERSION, "options": json.dumps(options, sort_keys=True),
             "position": {"step": position.step, "epoch": position.epoch, "batch": position.batch,
                          "best_val_loss": position.best_val_loss},
             "tensors": {k: v.detach().cpu().clone() for k, v in
                         trainable_tensors(model, options.get("train_decoder", False)).items()},
             "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler is not None else {},
             "rng": rng_states()}
    return write_tensor_tree(path, state, "training_state")


def load_state(path: str | os.PathLike, model: HyperStyleModel, optimizer: torch.optim.Optimizer,
               options: dict[str, Any], scaler: torch.amp.GradScaler | None = None) -> RunPosition:
    """Restore a run saved by `save_state` into freshly built `model` and `optimizer`; returns its position.

    Raises:
        FileNotFoundError: no state file. ValueError: a damaged file, or one saved with other training options
        (those that change the loss curve: data, batch size, losses, model, optimiser...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no training state {path}; start a new run without --resume")
    state = read_tensor_tree(path, "training_state", "resume from an earlier copy or start a new run")
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION:
        raise ValueError(f"{path} is not a training state of this version ({STATE_VERSION}); start a new run")
    _check_same_options(json.loads(state["options"]), options, path)
    _load_tensors(model, state["tensors"], path)
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state["scaler"]:
        scaler.load_state_dict(state["scaler"])
    set_rng_states(state["rng"])
    p = state["position"]
    return RunPosition(p["step"], p["epoch"], p["batch"], p["best_val_loss"])


# Options that may change between a run and its resumption (they do not change the loss curve).
RESUMABLE_CHANGES = {"steps", "val_every", "save_every", "image_every", "log_every"}


def _check_same_options(saved: dict[str, Any], now: dict[str, Any], path: Path) -> None:
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUMABLE_CHANGES and saved.get(k) != now.get(k))
    if changed:
        diffs = "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in changed[:5])
        raise ValueError(f"{path} was saved by a run with other options ({diffs}); resume with the same options "
                         f"or start a new run in another --out folder")


def _load_tensors(model: nn.Module, tensors: dict[str, torch.Tensor], path: Path) -> None:
    own = model.state_dict()
    unknown = [k for k in tensors if k not in own or own[k].shape != tensors[k].shape]
    if unknown:
        raise ValueError(f"{path} does not fit this model (first mismatching tensor {unknown[0]}); resume with the "
                         f"same models and options")
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v)
