"""What passes between the parts of a folder run: `WorkItem` (one input on its way through a batch: worker and
steps), `RenderedBatch` (what the models made of a batch: `steps.render` -> `steps.write_outputs`) and `FileResult`
(how one file went: worker -> driver, across processes for the Ray engine).

    item = WorkItem(plan.file, plan.out, plan.stat, time.perf_counter(), kinds=plan.kinds, ...)
    rendered = render([item, ...], options, models)          # RenderedBatch, on the CPU
    result = FileResult(item.file.key, "ok", ...)            # JSON-able: to_dict() / FileResult.from_dict(d)
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, get_args

import numpy as np
import torch
from PIL import Image

from ..deltas import WeightDeltas
from ..face.info import AlignmentInfo
from ..io.folders import InputFile

__all__ = ["WorkItem", "RenderedBatch", "FileResult", "Status", "Mode", "STATUSES"]

Status = Literal["ok", "skipped", "error"]      # a file's manifest status (run.runner's module docstring)
# Where a file's renders come from: "invert" (the models invert its photo) or "saved" (a saved latent and deltas:
# a latent input, or a photo whose inversion is still valid)
Mode = Literal["invert", "saved"]
STATUSES: tuple[str, ...] = get_args(Status)
_PASTED_KINDS = {"pasted", "edit_pasted"}


@dataclass
class WorkItem:
    """One input on its way through a batch: what its plan (run.plan.FilePlan) decided, then what the steps read
    and made of it. The pictures and tensors are freed once its result is made."""
    file: InputFile
    out: str                                # the stem of its output names
    stat: os.stat_result | None             # the input's stat when planned (None: it could not be looked at)
    t_start: float                          # time.perf_counter() when it was fed
    timings: dict[str, float] = field(default_factory=dict)     # stage -> seconds
    notes: list[str] = field(default_factory=list)              # what was converted on reading
    # The outputs under the current options (name -> (kind, label)), those to write now (None: all), and where
    # they come from (`Mode`).
    kinds: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    todo: set[str] | None = None
    mode: Mode = "invert"
    reuse_alignment: bool = False           # read the crop and record from <out>_aligned.png / _alignment.json
    paste_source: Path | None = None        # saved latents: the photo to paste back into (from their run's record)
    alignment_file: Path | None = None      # saved latents: their run's <out>_alignment.json
    photo: np.ndarray | None = None         # the upright RGB photo [H, W, 3] uint8 (kept only for paste-back)
    aligned: Image.Image | None = None      # the aligned crop (align), or the picture itself
    info: AlignmentInfo | None = None       # where the crop lies in the photo (align; for paste-back)
    x: torch.Tensor | None = None           # the model input [1, 3, h, w] in [-1, 1]
    latent: torch.Tensor | None = None      # saved latents: the W+ codes [1, n, 512]
    restyle_latent: torch.Tensor | None = None      # the ReStyle-e4e codes [1, n, 512], when read or computed
    deltas: WeightDeltas | None = None      # saved latents: their weight deltas (batch 1, float32)

    def wants(self, kind: str, label: str | None = None) -> bool:
        """Whether an output of `kind` (and `label`, if given) is to be written now."""
        return any(k == kind and (label is None or lab == label) and (self.todo is None or name in self.todo)
                   for name, (k, lab) in self.kinds.items())

    @property
    def wants_paste(self) -> bool:
        return any(self.wants(kind) for kind in _PASTED_KINDS)

    def free(self) -> None:
        """Drop the pictures and tensors (a batch keeps its items until the last one is written)."""
        self.photo = self.aligned = self.x = None
        self.latent = self.restyle_latent = self.deltas = None


@dataclass
class RenderedBatch:
    """What the models made of a batch, on the CPU; row i of every tensor belongs to the batch's item i. Empty
    (every field None or {}) when the run only aligns."""
    final: torch.Tensor | None = None               # the inversions [B, 3, H, W] in [-1, 1] (photos inverted now)
    latent: torch.Tensor | None = None              # W+ codes [B, n, 512]
    restyle_latent: torch.Tensor | None = None      # ReStyle-e4e codes [B, n, 512], when some output needs them
    deltas: WeightDeltas | None = None              # weight deltas of batch B
    edits: dict[str, torch.Tensor] = field(default_factory=dict)        # edit label -> [B, 3, H, W] in [-1, 1]
    transfers: dict[str, torch.Tensor] = field(default_factory=dict)    # transfer label -> [B, 3, H, W] in [-1, 1]

    def row(self, i: int) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Row `i` of every tensor (images, latents, deltas), named for messages."""
        rows: dict[str, torch.Tensor | list[torch.Tensor]] = {}
        for name, tensor in (("inversion", self.final), ("latent", self.latent),
                             ("restyle_latent", self.restyle_latent)):
            if tensor is not None:
                rows[name] = tensor[i]
        for group in (self.edits, self.transfers):
            rows.update({label: images[i] for label, images in group.items()})
        if self.deltas is not None:
            rows["deltas"] = [t[i] for t in self.deltas.values()]
        return rows


@dataclass(frozen=True)
class FileResult:
    """How one file went: the worker's answer, which the driver turns into the file's manifest line. Plain data
    (`to_dict` / `from_dict` as JSON), so engines send it between processes as it is."""
    file: str                               # the input's key
    status: Status
    code: str | None = None                 # why it is not ok: no_face, truncated, non_finite, failed, ...
    reason: str | None = None               # the same in words, for the user
    notes: tuple[str, ...] = ()             # what was converted on reading (EXIF rotation, CMYK, ...)
    timings: Mapping[str, float] = field(default_factory=dict)      # stage -> seconds (rounded)
    mode: Mode = "invert"
    written: tuple[str, ...] = ()           # the outputs written now (ok only), sorted

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "status": self.status, "code": self.code, "reason": self.reason,
                "notes": list(self.notes), "timings": dict(self.timings), "mode": self.mode,
                "written": list(self.written)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "FileResult":
        """The result `to_dict` wrote (our own workers' output, read back after a trip between processes)."""
        if d.get("status") not in STATUSES:
            raise ValueError(f"a worker result has status {d.get('status')!r}; expected one of {', '.join(STATUSES)}")
        return cls(file=d["file"], status=d["status"], code=d.get("code"), reason=d.get("reason"),
                   notes=tuple(d.get("notes") or ()), timings=dict(d.get("timings") or {}),
                   mode=d.get("mode", "invert"), written=tuple(d.get("written") or ()))
