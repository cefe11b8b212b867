"""Training logs: metrics as JSON lines (one object per record), mirrored to TensorBoard when it is installed."""
from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
METRICS_FILE = "metrics.jsonl"


class MetricsLog:
    """Append-only metrics file `<folder>/metrics.jsonl`: {"step", "split" (train/test), metric: value...}."""

    def __init__(self, folder: str | os.PathLike, tensorboard: bool = True):
        self.path = Path(folder) / METRICS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer = _tensorboard_writer(Path(folder) / "tensorboard") if tensorboard else None

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (written by a killed run after its last saved state), so a resumed run's log
        has each step once."""
        if not self.path.exists():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def write(self, step: int, split: str, metrics: dict[str, Any]) -> None:
        record = {"step": step, "split": split, **{k: _jsonable(v) for k, v in metrics.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{split}/{key}", value, step)

    def read(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.path.read_text().splitlines() if line] if self.path.exists() else []

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _jsonable(value: Any) -> Any:
    # JSON has no NaN / Infinity: write them as strings so the file stays standard JSON
    return str(value) if isinstance(value, float) and not math.isfinite(value) else value


def _tensorboard_writer(folder: Path):  # noqa: ANN202 - the optional SummaryWriter type
    try:
        # Optional package: TensorBoard logging only when `pip install tensorboard` was done.
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.info("TensorBoard is not installed (pip install tensorboard); metrics go to %s only", METRICS_FILE)
        return None
    return SummaryWriter(log_dir=str(folder))
