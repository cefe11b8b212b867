"""The worker side of a folder run, shared by every engine: read and align (stage 1), render and write (stage 2)
the files a plan (`run.plan`) asks for, and say per file how it went as plain data (a `FileResult`, run.work).

    worker = FileWorker(options, output, RunModels(options, files))
    worker.load_models(model_needs(plans, options))
    for result in worker.process(plans): ...      # or feed(plan) ... flush(), as the embedded engine streams

The driver (`run.runner.FolderRunner`) turns each result into the file's manifest line; the embedded engine runs
a FileWorker in its own process, the Ray engine (`run.ray_engine`) one per actor, whose results travel back as
JSON (`FileResult.to_dict` / `from_dict`).

Problems with one file become its result; only a problem of the output folder (`OutputFolderError`) raises.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from ..face.alignment import detect_faces     # dlib itself is imported on first use (optional until then)
from ..io.folders import printable
from ..io.images import MIN_IMAGE_SIDE
from .manifest import FOLDER_ERRNOS, output_folder_error
from .models import RunModels
from .options import RunOptions
from .plan import FilePlan
from .steps import CannotReuse, Skip, needs_restyle, read_image, read_latent, read_saved, render, write_outputs
from .work import FileResult, RenderedBatch, Status, WorkItem

__all__ = ["FileWorker", "FileResult", "ModelNeeds", "model_needs", "default_batch_size"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelNeeds:
    """What a run's plans need loaded up front (`model_needs`), so that every worker loads it once."""
    invert: bool = False            # the HyperStyle model and W-encoder (some photo is inverted)
    edits: bool = False             # the edit directions
    transfers: bool = False         # the transfer generators
    detect_faces: bool = False      # dlib's face detector (some photo is aligned)


def model_needs(plans: Iterable[FilePlan], options: RunOptions) -> ModelNeeds:
    """What the plans need: models (`RunModels.need` keywords) and face detection."""
    invert = edits = transfers = detect = False
    for p in plans:
        invert |= p.mode == "invert"
        todo = [k for n, (k, _) in p.kinds.items() if n in p.todo]
        edits |= "edit" in todo or "edit_pasted" in todo
        transfers |= "transfer" in todo
        detect |= options.align and not p.file.is_latent and not p.reuse_alignment
    return ModelNeeds(invert, edits, transfers, detect)


def default_batch_size(on_gpu: bool) -> int:
    """Images rendered together when the options do not say: 1 on CPU, where a larger batch saves little time per
    image and costs memory; 4 on a GPU, where a batch keeps the device busy (measured: docs, speed)."""
    return 4 if on_gpu else 1


class FileWorker:
    """Reads, renders and writes the files of plans into `output`, batching prepared files of one mode."""

    def __init__(self, options: RunOptions, output: Path, models: RunModels | None,
                 restyle_latents: dict[Path, torch.Tensor] | None = None, batch_size: int | None = None):
        self.options, self.output, self.models = options, output, models
        self.restyle_latents = restyle_latents or {}
        self.batch_size = batch_size or options.batch_size or default_batch_size(self._on_gpu())
        self._batch: list[WorkItem] = []

    def _on_gpu(self) -> bool:
        m = self.models
        model = m and (m.hs or m.restyle or next(iter(m.transfers.values()), None))
        return model is not None and next(model.parameters()).device.type != "cpu"

    def load_models(self, needs: ModelNeeds) -> None:
        """Load what `needs` (`model_needs`) asks for, and check dlib now (one clear error, not one per file)."""
        if self.models is not None:
            self.models.need(invert=needs.invert, edits=needs.edits, transfers=needs.transfers)
            if not self.options.batch_size:
                self.batch_size = default_batch_size(self._on_gpu())
        if needs.detect_faces:
            detect_faces(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))

    # ------------------------------------------------------------------ streaming interface
    def process(self, plans: Iterable[FilePlan]) -> list[FileResult]:
        """Every plan's result (a Ray batch: all of them, then the last partial render batch)."""
        results = [r for plan in plans for r in self.feed(plan)]
        return results + self.flush()

    def feed(self, plan: FilePlan) -> Iterator[FileResult]:
        """Take one plan; yields the results that are ready (a refused file at once, a full batch when rendered)."""
        item = _work_item(plan)
        if plan.cleanup_only:   # only outputs to delete (an edit was removed): the driver does that
            yield self._result(item, "ok")
            return
        refused = self._prepare(item)
        if refused is not None:
            yield refused
            return
        if self._batch and self._batch[0].mode != item.mode:
            yield from self.flush()
        self._batch.append(item)
        if len(self._batch) >= self.batch_size:
            yield from self.flush()

    def flush(self) -> list[FileResult]:
        """Render and write what is batched; its results."""
        batch, self._batch = self._batch, []
        return self._process(batch) if batch else []

    # ------------------------------------------------------------------ results
    def _result(self, item: WorkItem, status: Status, code: str | None = None,
                reason: str | None = None) -> FileResult:
        item.timings["total"] = time.perf_counter() - item.t_start
        result = FileResult(item.file.key, status, code, reason, notes=tuple(item.notes),
                            timings={k: round(v, 4) for k, v in item.timings.items()}, mode=item.mode,
                            written=tuple(sorted(item.todo or ())) if status == "ok" else ())
        if status != "ok":
            log.debug("%s %s: %s", status, printable(item.file.key), printable(str(reason)))
        item.free()     # now: a batch keeps its items until the last one is written
        return result

    # ------------------------------------------------------------------ stage 1: read, check, align (run.steps)
    def _prepare(self, item: WorkItem) -> FileResult | None:
        """None when `item` is ready to render; else its result (refused or failed)."""
        try:
            if item.file.is_latent:
                read_latent(item, self.options, self.restyle_latents)
                return None
            if item.mode == "saved":
                try:
                    read_saved(item, self.options, self.output)
                except CannotReuse as e:
                    log.debug("inverting %s again: %s", printable(item.file.key), e)
                    self._invert_instead(item)
            wants_restyle = needs_restyle(item, self.options) and item.restyle_latent is None
            if wants_restyle:
                self.models.need(restyle=True)
            crop_outputs = item.wants("aligned") or item.wants("alignment")
            if item.mode == "invert" or item.wants_paste or crop_outputs or wants_restyle:
                read_image(item, self.options, self.models, self.output)
            return None
        except Skip as s:
            return self._result(item, s.status, s.code, s.reason)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the folder
            log.debug("preparing %s failed", printable(item.file.key), exc_info=True)
            return self._result(item, "error", "failed", f"{type(e).__name__}: {e}")

    def _invert_instead(self, item: WorkItem) -> None:
        """The saved latent or deltas cannot be used: invert the photo, and write them again too."""
        item.mode = "invert"
        item.latent = item.restyle_latent = item.deltas = None
        item.todo |= {n for n, (kind, _) in item.kinds.items() if kind in ("latent", "deltas")}
        self.models.need(invert=True)
        if self.options.align:
            detect_faces(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))

    # ------------------------------------------------------------------ stage 2: models, then write (run.steps)
    def _process(self, batch: list[WorkItem]) -> list[FileResult]:
        try:
            rendered = render(batch, self.options, self.models)
        except Exception as e:  # noqa: BLE001
            if len(batch) > 1:      # find the one that fails; the others still get their outputs
                return [r for item in batch for r in self._process([item])]
            log.debug("processing %s failed", printable(batch[0].file.key), exc_info=True)
            return [self._result(batch[0], "error", "failed", f"{type(e).__name__}: {e}")]
        return [self._write(item, i, rendered) for i, item in enumerate(batch)]

    def _write(self, item: WorkItem, i: int, rendered: RenderedBatch) -> FileResult:
        try:
            t = time.perf_counter()
            write_outputs(item, i, rendered, self.options, self.output)
            item.timings["write"] = time.perf_counter() - t
        except Skip as s:       # NaN or infinite outputs: nothing was written
            return self._result(item, s.status, s.code, s.reason)
        except OSError as e:
            if e.errno in FOLDER_ERRNOS:    # disk full, read-only: every later file would fail the same way
                raise output_folder_error(self.output, f"writing the outputs of {printable(item.file.key)}",
                                          e) from None
            log.debug("writing %s failed", printable(item.file.key), exc_info=True)
            return self._result(item, "error", "write_failed", f"{type(e).__name__}: {e}")
        except Exception as e:  # noqa: BLE001
            log.debug("writing %s failed", printable(item.file.key), exc_info=True)
            return self._result(item, "error", "write_failed", f"{type(e).__name__}: {e}")
        return self._result(item, "ok")


def _work_item(plan: FilePlan) -> WorkItem:
    """Made when the plan is fed: only the batch's items (and their pictures) live."""
    return WorkItem(plan.file, plan.out, plan.stat, time.perf_counter(), kinds=plan.kinds, todo=set(plan.todo),
                    mode=plan.mode, reuse_alignment=plan.reuse_alignment, paste_source=plan.paste_source,
                    alignment_file=plan.alignment_file)
