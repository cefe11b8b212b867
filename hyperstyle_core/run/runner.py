"""Folder processing: align, invert, edit, transfer and paste back every image of a folder, resumably.

    summary = run_folder(["photos/"], "out/", RunOptions(models="models", edits=parse_edits("age=+3")))

Inputs are streamed in batches of `batch_size`; every output file is written atomically (temp file + rename), and
every input file gets a line in `OUTPUT/manifest.jsonl` after its outputs are complete:

    {"file": "a.jpg", "status": "ok", "out": "a", "outputs": ["a_aligned.png", ...], "timings": {...}, ...}
    {"file": "b.jpg", "status": "skipped", "code": "no_face", "reason": "No face found in b.jpg ..."}
    {"file": "c.jpg", "status": "error", "code": "truncated", "reason": "c.jpg is truncated ..."}

Statuses:
    ok       every output of the file was written.
    skipped  the file is not processed because of what it is: not an image type (by extension), no face found,
             smaller than 64 px or above the pixel limit. Re-running does not look at it again while its size and
             modification time (and the alignment setting) stay the same.
    error    reading or processing failed: empty, truncated, undecodable, unreadable, NaN or infinite values in
             the input (non_finite) or in what the models made of it (non_finite_output), a model error.
             Re-running retries it (a file still being copied looks truncated) and appends a new line.

Resume: the manifest is append-only and the last line per file wins. A file is done when its last line is `ok`,
the file is unchanged (size, mtime) and every output the current options ask for exists; done files get no new
line. A run killed at any point leaves no partial outputs (stray temp files are removed by the next run) and at
most one file whose outputs exist without an `ok` line; that file is processed again. Records are data: an `out`
name that is not a plain file name is ignored, and unreadable lines are skipped.

File names are recorded as valid text (an undecodable byte as \\xNN, see `run.manifest`). An output folder that
cannot be written (permissions, read-only, disk full) stops the run with `OutputFolderError` (a ValueError).

Output names: see `run.naming`. The run is split into run.options (RunOptions, edits), io.folders (the inputs),
run.naming (output names), run.manifest (manifest, lock, summary), run.models (loading) and run.steps (per-file
read, render, write); this module strings them together.
"""
from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..face.alignment import detect_faces     # dlib itself is imported on first use (optional until then)
from ..io.files import atomic_path
from ..io.folders import InputFile, collect_inputs, printable
from ..io.images import MIN_IMAGE_SIDE
from .manifest import (FOLDER_ERRNOS, Manifest, RunSummary, output_folder_error, output_lock, read_manifest,
                       record_key, valid_text)
from .models import RunModels
from .naming import assign_output_stems, output_names
from .options import MANIFEST_NAME, SUMMARY_NAME, RunOptions
from .steps import Skip, WorkItem, read_image, read_latent, render, write_outputs

__all__ = ["run_folder", "FolderRunner"]

log = logging.getLogger(__name__)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_folder(inputs: Sequence[str | os.PathLike] | str | os.PathLike, output: str | os.PathLike,
               options: RunOptions | None = None, progress: bool = False,
               on_record: Callable[[dict, RunSummary], None] | None = None) -> RunSummary:
    """Process every image (or `*_latent.safetensors`) of `inputs` into `output`; see the module docstring.

    Args:
        inputs: a folder, or several folders / files.
        output: the output folder (created); holds manifest.jsonl and summary.json.
        options: RunOptions (default: align, invert, paste back, latents and deltas, no edits).
        progress: show a tqdm bar (images/s) on stderr.
        on_record: called after each manifest line with (record, summary so far).
    Returns:
        RunSummary of this call (also written to OUTPUT/summary.json).
    Raises:
        ValueError / FileNotFoundError for problems with the options, models or folders (before any file is
        processed); OutputFolderError (a ValueError) when the output folder cannot be written, at any point;
        problems with single files never raise, they are recorded.
    """
    options = options or RunOptions()
    options.check()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; give a folder")
    items = collect_inputs(inputs, options.pattern, [output] if output.exists() else [], options.read_latents)
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_folder_error(output, "creating it", e) from None
    with output_lock(output):
        return FolderRunner(items, output, options, progress, on_record).run()


class FolderRunner:
    """One run over collected inputs: plan (what the manifest says is done), then read, render and write in
    batches, recording each file in the manifest as it finishes."""

    def __init__(self, items: list[InputFile], output: Path, options: RunOptions, progress: bool,
                 on_record: Callable[[dict, RunSummary], None] | None):
        self.items, self.output, self.options = items, output, options
        self.progress, self.on_record = progress, on_record
        self.summary = RunSummary(total=len(items), manifest=str(output / MANIFEST_NAME))
        self.models: RunModels | None = None
        self.run_id = _now()

    # ------------------------------------------------------------------ planning
    def _plan(self) -> list[tuple[InputFile, str, os.stat_result | None]]:
        """(input, output name, stat) of every file that needs work; counts the finished and skipped ones."""
        previous = {} if self.options.force else read_manifest(self.output / MANIFEST_NAME)
        last_of = {item.key: previous.get(record_key(item.key)) for item in self.items}
        outs = assign_output_stems(self.items, self.options,     # recorded names are checked there
                                   {k: r.get("out") for k, r in last_of.items() if r is not None})
        pending = []
        for item in self.items:
            try:
                st = item.path.stat()
            except OSError:
                st = None
            last = last_of[item.key]
            if last and st is not None and last.get("size") == st.st_size and last.get("mtime_ns") == st.st_mtime_ns:
                if last.get("status") == "ok" and last.get("out") == outs[item.key] and all(
                        (self.output / n).exists() for n in output_names(outs[item.key], self.options, item.is_latent)):
                    self.summary.already_done += 1
                    continue
                if last.get("status") == "skipped" and last.get("align") == self.options.align:
                    self.summary.skipped_before += 1
                    continue
            pending.append((item, outs[item.key], st))
        return pending

    def run(self) -> RunSummary:
        pending = self._plan()
        manifest = Manifest(self.output / MANIFEST_NAME)
        bar = None
        if self.progress:
            bar = tqdm(total=len(pending), unit="img", desc="hyperstyle", dynamic_ncols=True)
        self._bar = bar
        self._manifest = manifest
        try:
            if pending and self.options.needs_models:
                self.models = RunModels(self.options, need_invert=any(not f.is_latent for f, _, _ in pending))
            if self.options.align and any(not f.is_latent for f, _, _ in pending):
                # dlib missing: one clear error now, not one per file
                detect_faces(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))
            batch_size = self.options.batch_size or self._default_batch_size()
            t0 = time.perf_counter()
            batch: list[WorkItem] = []
            for file, out, st in pending:
                item = WorkItem(file, out, st, time.perf_counter())     # made here: only the batch's items live
                prepared = self._prepare(item)
                if prepared is None:
                    continue
                if batch and batch[0].file.is_latent != item.file.is_latent:
                    self._process(batch)
                    batch = []
                batch.append(item)
                if len(batch) >= batch_size:
                    self._process(batch)
                    batch = []
            if batch:
                self._process(batch)
            self.summary.seconds = time.perf_counter() - t0
        finally:
            manifest.close()
            if bar is not None:
                bar.close()
        try:
            with atomic_path(self.output / SUMMARY_NAME) as tmp:
                tmp.write_text(json.dumps({"run": self.run_id, **self.summary.to_dict()}, indent=1) + "\n")
        except OSError as e:
            raise output_folder_error(self.output, f"writing {SUMMARY_NAME}", e) from None
        return self.summary

    def _default_batch_size(self) -> int:
        model = self.models and (self.models.hs or next(iter(self.models.transfers.values()), None))
        if model is None:
            return 4
        return 1 if next(model.parameters()).device.type == "cpu" else 4

    # ------------------------------------------------------------------ recording
    def _record(self, item: WorkItem, status: str, code: str | None = None, reason: str | None = None,
                outputs: list[str] | None = None) -> None:
        record = {"file": item.file.key, "status": status}
        if status == "ok":
            record["out"] = item.out
            record["outputs"] = outputs or []
        else:
            record["code"] = code
            record["reason"] = reason
        if item.notes:
            record["note"] = "; ".join(item.notes)
        if item.stat is not None:
            record["size"], record["mtime_ns"] = item.stat.st_size, item.stat.st_mtime_ns
        record["align"] = self.options.align
        item.timings["total"] = time.perf_counter() - item.t_start
        record["timings"] = {k: round(v, 4) for k, v in item.timings.items()}
        record["time"] = _now()
        record["run"] = self.run_id
        record = valid_text(record)     # as written: names with undecodable bytes spelled \xNN
        self._manifest.append(record)
        s = self.summary
        setattr(s, status, getattr(s, status) + 1)
        if code:
            s.codes[code] = s.codes.get(code, 0) + 1
        if status != "ok":
            log.debug("%s %s: %s", status, printable(item.file.key), printable(str(reason)))
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(ok=s.ok, skipped=s.skipped, errors=s.error, refresh=False)
        if self.on_record is not None:
            self.on_record(record, s)
        # Free the photo and tensors now: a batch keeps its items until the last one is written.
        item.photo = item.aligned = item.x = item.latent = item.restyle_latent = item.deltas = None

    # ------------------------------------------------------------------ stage 1: read, check, align (run.steps)
    def _prepare(self, item: WorkItem) -> WorkItem | None:
        try:
            if item.file.is_latent:
                read_latent(item, self.options)
            else:
                read_image(item, self.options, self.models)
            return item
        except Skip as s:
            self._record(item, s.status, s.code, s.reason)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the folder
            log.debug("preparing %s failed", printable(item.file.key), exc_info=True)
            self._record(item, "error", "failed", f"{type(e).__name__}: {e}")
        return None

    # ------------------------------------------------------------------ stage 2: models, then write (run.steps)
    def _process(self, batch: list[WorkItem]) -> None:
        try:
            rendered = render(batch, self.options, self.models)
        except Exception as e:  # noqa: BLE001
            if len(batch) > 1:      # find the one that fails; the others still get their outputs
                for item in batch:
                    self._process([item])
                return
            log.debug("processing %s failed", printable(batch[0].file.key), exc_info=True)
            self._record(batch[0], "error", "failed", f"{type(e).__name__}: {e}")
            return
        for i, item in enumerate(batch):
            try:
                t = time.perf_counter()
                written = write_outputs(item, i, rendered, self.options, self.output)
                item.timings["write"] = time.perf_counter() - t
            except Skip as s:       # NaN or infinite outputs: nothing was written
                self._record(item, s.status, s.code, s.reason)
                continue
            except OSError as e:
                if e.errno in FOLDER_ERRNOS:    # disk full, read-only: every later file would fail the same way
                    raise output_folder_error(self.output, f"writing the outputs of {printable(item.file.key)}",
                                              e) from None
                log.debug("writing %s failed", printable(item.file.key), exc_info=True)
                self._record(item, "error", "write_failed", f"{type(e).__name__}: {e}")
                continue
            except Exception as e:  # noqa: BLE001
                log.debug("writing %s failed", printable(item.file.key), exc_info=True)
                self._record(item, "error", "write_failed", f"{type(e).__name__}: {e}")
                continue
            self._record(item, "ok", outputs=written)
