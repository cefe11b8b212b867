"""Folder processing: align, invert, edit, transfer and paste back every image of a folder, resumably.

    summary = run_folder(["photos/"], "out/", RunOptions(models="models", edits=parse_edits("age=+3")))

Inputs are streamed in batches of `batch_size`; every output file is written atomically (temp file + rename), and
every input file gets a line in `OUTPUT/manifest.jsonl` after its outputs are complete:

    {"file": "a.jpg", "status": "ok", "out": "a", "outputs": ["a_aligned.png", ...], "keys": {...}, ...}
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

Resume: the manifest is append-only and the last line per file wins. An `ok` line records, per output, a key of
everything that output depends on (`run.state`: options, model file identities) and the input's size and mtime.
A re-run computes the keys under its own options: a file is done when its input is unchanged and every output it
should have exists with its key; done files get no new line. Otherwise only the outputs whose key changed (or that
are missing) are written, from what is still valid: a new or changed edit or transfer of a finished photo is
rendered from its saved `_latent` and `_deltas` files (no inversion), with the saved crop and alignment record
(no alignment); changed iterations or models invert again. Outputs an earlier record of the same file lists that
the current options do not produce (a removed edit, a changed name) are deleted, so the folder holds what a fresh
run writes; only names of the form `<out>_*.png|json|safetensors` that our runner recorded for that file are ever
deleted (files of inputs that are gone are left alone). A run killed at any point leaves no partial outputs (stray
temp files are removed by the next run) and at most one file whose outputs exist without an `ok` line; that file
is processed again. Records are data: an `out` name that is not a plain file name is ignored, and unreadable lines
are skipped.

File names are recorded as valid text (an undecodable byte as \\xNN, see `run.manifest`). An output folder that
cannot be written (permissions, read-only, disk full) stops the run with `OutputFolderError` (a ValueError).

Output names: see `run.naming`. The run is split into run.options (RunOptions, edits), io.folders and
run.input_list (the inputs), run.plan (what each file still needs), run.naming (output names), run.state (what each
output depends on), run.manifest (manifest, lock, summary), run.models (finding and loading), run.steps (per-file
read, render, write), run.worker (the steps of a batch of plans -> one result per file) and run.restyle_latents
(ReStyle latents for saved latents); this module is the driver: it plans, has a worker process the plans and records
the results. Engines differ only in where workers run: here in-process (`run_folder`), on Ray actors
(`run.ray_engine`), through the same `FolderRunner` and `FileWorker` code.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import time
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..io.files import atomic_path
from ..io.folders import InputFile, collect_inputs, printable
from ..io.run_folder import MANIFEST_NAME, SUMMARY_NAME, ManifestRecord
from .input_list import input_list_groups
from .manifest import Manifest, RunSummary, output_folder_error, output_lock, updated_summary, valid_text
from .models import ModelFiles, RunModels, resolve_model_files
from .options import RunOptions, edit_labels, transfer_label
from .plan import FilePlan, RunPlanner
from .restyle_latents import complete_restyle_latents, latents_without_restyle, no_restyle_message
from .work import FileResult
from .worker import FileWorker, model_needs

__all__ = ["run_folder", "run_with", "FolderRunner"]

log = logging.getLogger(__name__)

OnRecord = Callable[[ManifestRecord, RunSummary], None]     # (the line just written, the summary so far)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def run_folder(inputs: Sequence[str | os.PathLike] | str | os.PathLike, output: str | os.PathLike,
               options: RunOptions | None = None, progress: bool = False, on_record: OnRecord | None = None,
               input_list: str | os.PathLike | None = None) -> RunSummary:
    """Process every image (or `*_latent.safetensors`) of `inputs` into `output`; see the module docstring.

    Args:
        inputs: a folder, or several folders / files ([] with `input_list`).
        output: the output folder (created); holds manifest.jsonl and summary.json.
        options: RunOptions (default: align, invert, paste back, latents and deltas, no edits).
        progress: show a tqdm bar on stderr (images/s, or s/img when slower than one image per second); log
            lines are printed above it.
        on_record: called after each manifest line with (record, summary so far).
        input_list: a text file of image paths, one per line, read in groups (`run.input_list`) instead of
            `inputs`: for sets too large to list at once.
    Returns:
        RunSummary of this call (summary.json accumulates every run's; see `run.manifest.updated_summary`).
    Raises:
        ValueError / FileNotFoundError for problems with the options, models or folders (before anything is
        written: a missing model creates no output folder); OutputFolderError (a ValueError) when the output
        folder cannot be written, at any point; problems with single files never raise, they are recorded.
    """
    return run_with(FolderRunner, inputs, output, options, progress, on_record, input_list)


def run_with(runner: type[FolderRunner], inputs: Sequence[str | os.PathLike] | str | os.PathLike,
             output: str | os.PathLike, options: RunOptions | None = None, progress: bool = False,
             on_record: OnRecord | None = None, input_list: str | os.PathLike | None = None,
             **engine_args) -> RunSummary:
    """`run_folder` with the driver class `runner` (an engine: FolderRunner runs the work in-process), which gets
    `engine_args`. Everything is checked before the output folder is created."""
    options = options or RunOptions()
    options.check()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; give a folder")
    if input_list is not None:
        if inputs:
            raise ValueError("give the inputs as folders/files or as a list file (--input-list), not both")
        groups: Iterable[list[InputFile]] = input_list_groups(input_list)
        files, lacking = resolve_model_files(options, photos=True), []
    else:
        items = collect_inputs(inputs, options.pattern, [output] if output.exists() else [], options.read_latents)
        files = resolve_model_files(options, photos=any(not item.is_latent for item in items))
        lacking = latents_without_restyle(items, options)
        if lacking and files.restyle is None:
            raise FileNotFoundError(no_restyle_message(lacking, len(items), options))
        groups = [items]
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_folder_error(output, "creating it", e) from None
    with output_lock(output):
        return runner(groups, output, options, progress, on_record, files, lacking, **engine_args).run()


class FolderRunner:
    """The driver of one run over groups of inputs (whose output names cannot clash between groups): plans each
    group (what the manifest says is done and still valid), has a `FileWorker` process the pending files
    (`_results`: here in this process; engines override it) and records each result in the manifest as it
    arrives. Only the driver writes the manifest and the summary, and deletes outputs."""

    def __init__(self, groups: Iterable[list[InputFile]], output: Path, options: RunOptions, progress: bool,
                 on_record: OnRecord | None, files: ModelFiles, lacking_restyle: Sequence[InputFile] = ()):
        self.groups, self.output, self.options = groups, output, options
        self.progress, self.on_record = progress, on_record
        self.files = files
        self.lacking_restyle = list(lacking_restyle)
        self.summary = RunSummary(total=0, manifest=str(output / MANIFEST_NAME))
        self.models: RunModels | None = RunModels(options, self.files) if options.needs_models else None
        self.run_id = _now()
        self.restyle_latents: dict[Path, torch.Tensor] = {}
        self._bar = None
        self._manifest: Manifest | None = None
        self._worker: FileWorker | None = None

    # ------------------------------------------------------------------ the run
    def run(self) -> RunSummary:
        if self.lacking_restyle:
            self.restyle_latents = complete_restyle_latents(
                self.lacking_restyle, self.options, self.models, self.options.batch_size or 4)
        manifest = Manifest(self.output / MANIFEST_NAME)
        bar = None
        if self.progress:
            # unit "img": tqdm shows img/s, or s/img when slower than one image per second
            bar = tqdm(total=0, unit="img", desc="hyperstyle", dynamic_ncols=True)
        self._bar = bar
        self._manifest = manifest
        try:
            with logging_redirect_tqdm() if bar is not None else contextlib.nullcontext():
                for items in self.groups:
                    self._run_group(items)
        except KeyboardInterrupt as e:
            e.summary = self.summary     # what was finished so far, for the caller's "stopped after ..." line
            raise
        finally:
            manifest.close()
            if bar is not None:
                bar.close()
        self._write_summary()
        return self.summary

    def _run_group(self, items: list[InputFile]) -> None:
        self.summary.total += len(items)
        pending = RunPlanner(items, self.output, self.options, self.files, self.summary).plan()
        if self._bar is not None:
            self._bar.total += len(pending)
            self._bar.refresh()
        by_key = {plan.file.key: plan for plan in pending}
        for result in self._results(pending):
            self._record(by_key.pop(result.file), result)
        if by_key:      # an engine that lost files would leave them unrecorded: say so rather than pass
            raise RuntimeError(f"{len(by_key)} files got no result, e.g. {printable(next(iter(by_key)))}")

    def _results(self, pending: list[FilePlan]) -> Iterator[FileResult]:
        """One result per pending file, as files finish (in-process; the models are loaded once)."""
        if not pending:
            return
        if self._worker is None:
            self._worker = FileWorker(self.options, self.output, self.models, self.restyle_latents)
        self._worker.load_models(model_needs(pending, self.options))
        t0 = time.perf_counter()
        for plan in pending:
            yield from self._worker.feed(plan)
        yield from self._worker.flush()
        self.summary.seconds += time.perf_counter() - t0

    def _write_summary(self) -> None:
        path = self.output / SUMMARY_NAME
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(updated_summary(path, self.run_id, self.summary) + "\n")
        except OSError as e:
            raise output_folder_error(self.output, f"writing {SUMMARY_NAME}", e) from None

    # ------------------------------------------------------------------ recording
    def _record(self, plan: FilePlan, result: FileResult) -> None:
        """The manifest line of a file from its plan and its worker's result; the same for every engine."""
        status, code, reason = result.status, result.code, result.reason
        record: ManifestRecord = {"file": plan.file.key, "status": status}
        # Outputs of products this run does not manage stay listed with their old keys (the run that owns
        # them checks those); a file that failed keeps none of its own.
        carried = {n: kind for n, kind in plan.carried.items() if (self.output / n).is_file()}
        kinds = {name: kind for name, (kind, _) in plan.kinds.items()} if status == "ok" else {}
        keys = {name: plan.keys.key(kind, label) for name, (kind, label) in plan.kinds.items()} if kinds else {}
        for name, kind in carried.items():
            kinds[name] = kind
            keys[name] = plan.previous_keys.get(name)
        if kinds:
            record["out"] = plan.out
            record["outputs"] = list(kinds)
            record["kinds"], record["keys"] = kinds, keys
        if status == "ok":
            record["alignment_key"], record["inversion_key"] = plan.keys.alignment, plan.keys.inversion
            record["settings"] = self._settings()
            record["models"] = self.files.ids.to_dict()
        else:
            record["code"] = code
            record["reason"] = reason
        notes = list(result.notes) or ([plan.note] if plan.note and status == "ok" else [])
        if notes:
            record["note"] = "; ".join(notes)
        if plan.stat is not None:
            record["size"], record["mtime_ns"] = plan.stat.st_size, plan.stat.st_mtime_ns
        record["align"] = self.options.align
        record["source"] = os.path.abspath(plan.file.path)
        record["timings"] = dict(result.timings)
        record["time"] = _now()
        record["run"] = self.run_id
        record = valid_text(record)     # as written: names with undecodable bytes spelled \xNN
        # Before the line: a kill in between leaves the old line, whose missing outputs make the file run again.
        # Deleted: earlier outputs of managed products that the options no longer produce and, for a file that
        # now fails, its earlier outputs of them: the folder then holds what a fresh run writes.
        failed = [] if status == "ok" else [n for n in plan.kinds if n in plan.previous_outputs]
        self._delete_outputs(plan.stale + failed)
        self._manifest.append(record)
        self._count(plan, result, record)

    def _count(self, plan: FilePlan, result: FileResult, record: ManifestRecord) -> None:
        s = self.summary
        status, code = result.status, result.code
        setattr(s, status, getattr(s, status) + 1)
        if status == "ok" and result.mode == "saved" and not plan.file.is_latent:
            s.reused += 1
        if code:
            s.codes[code] = s.codes.get(code, 0) + 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(ok=s.ok, skipped=s.skipped, errors=s.error, refresh=False)
        if self.on_record is not None:
            self.on_record(record, s)

    def _settings(self) -> dict[str, object]:
        """The options that shape the outputs, readable (the keys hold them hashed)."""
        o = self.options
        return {"align": o.align, "align_size": o.align_size, "iterations": o.iterations,
                "fast": o.fast, "dtype": str(o.dtype or "float32"), "deltas_dtype": o.stored_deltas_dtype,
                "edits": {label: [e.name, e.factor] for label, e in zip(edit_labels(o.edits), o.edits)},
                "transfers": [transfer_label(t) for t in o.transfers], "transfer_latent": o.transfer_latent}

    def _delete_outputs(self, names: list[str]) -> None:
        for name in names:
            try:
                (self.output / name).unlink()
            except FileNotFoundError:
                continue
            except OSError as e:
                raise output_folder_error(self.output, f"removing {name}, which the options no longer produce",
                                          e) from None
