"""The options of a training run, with the official defaults (options/train_options.py + the README command)."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .data import DOMAINS
from .optim import DEFAULT_LR, OPTIMIZERS


@dataclass(frozen=True)
class TrainOptions:
    """Everything that decides a run's loss curve, plus its schedule. Defaults: the official faces command."""
    domain: str = "faces"               # faces (ID loss, flip, 256x256), cars (192x256, MoCo), other (MoCo)
    steps: int = 500_000                # --max_steps: optimiser steps (one per batch)
    batch_size: int = 8                 # README: --batch_size=8
    test_batch_size: int = 8            # README: --test_batch_size=8
    n_iters: int = 5                    # README: --n_iters_per_batch=5
    lr: float = DEFAULT_LR              # --learning_rate
    optimizer: str = "ranger"           # --optim_name: ranger | adam
    l2: float = 1.0                     # --l2_lambda
    lpips: float = 0.8                  # --lpips_lambda
    id: float | None = None             # --id_lambda: None = the domain's default (faces 0.1, others 0)
    moco: float | None = None           # --moco_lambda: None = the domain's default (faces 0, others 0.5)
    train_decoder: bool = False         # --train_decoder: the generator is trained too
    layers: str = ""                    # --layers_to_tune ('' = official default)
    seed: int = 0                       # data order, flips and the initialisation of a new model
    val_every: int = 5000               # README: --val_interval=5000
    save_every: int = 10000             # README: --save_interval=10000
    image_every: int = 100              # --image_interval
    log_every: int = 50                 # --board_interval: train metrics every this many steps
    max_val_batches: int | None = 150   # README: --max_val_batches=150
    amp: bool = False                   # float16 autocast + gradient scaling (CUDA only)
    source: str = ""                    # what the model started from (file names), recorded in the outputs

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown domain {self.domain!r}; use one of {', '.join(DOMAINS)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)}")
        for name in ("steps", "batch_size", "test_batch_size", "n_iters", "val_every", "save_every", "image_every",
                     "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if self.max_val_batches is not None and self.max_val_batches < 1:
            raise ValueError(f"max-val-batches must be a positive integer, got {self.max_val_batches!r}")
        if isinstance(self.lr, bool) or not math.isfinite(self.lr) or self.lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")

    @property
    def id_weight(self) -> float:
        return (0.1 if self.domain == "faces" else 0.0) if self.id is None else self.id

    @property
    def moco_weight(self) -> float:
        return (0.0 if self.domain == "faces" else 0.5) if self.moco is None else self.moco

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
