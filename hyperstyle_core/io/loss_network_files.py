"""The converted files of the loss networks (nn.loss_networks): what each is called, how to get it and where it is
found, and which networks each measure of nn.perceptual is built from.

    path = find_loss_network("alexnet", "models/")           # None when absent
    LOSS_NETWORK_FILES["alexnet"].download                    # "alexnet": `hyperstyle download alexnet`

Training (train.losses) and the metrics (metrics/) both read their networks through here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .registry import DEFAULT_FILES, KIND_TITLES, MODEL_KINDS, REGISTRY

__all__ = ["LossNetworkFile", "LOSS_NETWORK_FILES", "MEASURE_NETWORKS", "find_loss_network"]


@dataclass(frozen=True)
class LossNetworkFile:
    """One loss network's converted file and where it comes from (a view of its io.registry entry)."""
    kind: str                       # its model kind (`load(..., expect=kind)`)
    title: str                      # what it is, for messages
    file: str                       # its converted file's name, as `hyperstyle download` writes it
    download: str                   # its `hyperstyle download` name
    official: str                   # the official file it is converted from
    other_names: tuple[str, ...]    # other names a hand conversion of the official file gives


def _entry(kind: str) -> LossNetworkFile:
    checkpoint = REGISTRY[MODEL_KINDS[kind].default]
    return LossNetworkFile(kind, KIND_TITLES[kind], DEFAULT_FILES[kind], checkpoint.name, checkpoint.official_file,
                           tuple(f"{alias}.safetensors" for alias in checkpoint.aliases))


LOSS_NETWORK_FILES: dict[str, LossNetworkFile] = {kind: _entry(kind)
                                                  for kind in ("ir_se50", "alexnet", "lpips_alex_lin", "moco_v2")}
# Measure (nn.perceptual: lpips, id, moco) -> the loss networks it is built from
MEASURE_NETWORKS: dict[str, tuple[str, ...]] = {"lpips": ("alexnet", "lpips_alex_lin"), "id": ("ir_se50",),
                                                "moco": ("moco_v2",)}


def find_loss_network(kind: str, models_dir: str | os.PathLike) -> Path | None:
    """The converted file of loss network `kind` in `models_dir`: under its download name, else under the name a
    hand conversion of the official file gives; None when neither is there."""
    entry, folder = LOSS_NETWORK_FILES[kind], Path(models_dir)
    return next((folder / name for name in (entry.file, *entry.other_names) if (folder / name).is_file()), None)
