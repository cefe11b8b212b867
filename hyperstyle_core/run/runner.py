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

Output names: see `run.naming`. The run is split into run.options (RunOptions, edits), io.folders (the inputs),
run.naming (output names), run.state (what each output depends on), run.manifest (manifest, lock, summary),
run.models (finding and loading) and run.steps (per-file read, render, write); this module strings them together.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..face.alignment import detect_faces     # dlib itself is imported on first use (optional until then)
from ..inversion import restyle_e4e_invert
from ..io.files import atomic_path
from ..io.folders import LATENT_SUFFIX, InputFile, collect_inputs, printable
from ..io.formats import LEGACY_VERSION_KEY, TAG_KEY, VERSION_KEY, read_safetensors_header, read_safetensors_metadata
from ..io.images import MIN_IMAGE_SIDE, ImageReadError, pil_to_input, read_rgb
from ..io.latents import load_latent_file, save_latent
from .manifest import (FOLDER_ERRNOS, Manifest, RunSummary, output_folder_error, output_lock, read_manifest,
                       record_key, updated_summary, valid_text)
from .models import RESTYLE_DOWNLOAD, ModelFiles, RunModels, resolve_model_files
from .naming import assign_output_stems, is_plain_name, output_kinds
from .options import LOCK_NAME, MANIFEST_NAME, SUMMARY_NAME, RunOptions, edit_labels, transfer_label
from .state import FileKeys, file_keys, file_stat_identity
from .steps import (RESTYLE_STEPS, CannotReuse, Skip, WorkItem, needs_restyle, read_image, read_latent, read_saved,
                    render, write_outputs)

__all__ = ["run_folder", "FolderRunner"]

log = logging.getLogger(__name__)

# Outputs a photo can get from its saved latent and deltas (and saved or repeated alignment), without inversion.
_FROM_SAVED = {"aligned", "alignment", "edit", "edit_pasted", "transfer", "latent", "deltas"}
_OUTPUT_SUFFIXES = (".png", ".json", ".safetensors")
# The product (RunOptions.products) each kind of output belongs to; "rendered": an edit or transfer image of a
# record that did not say which.
_KIND_PRODUCTS = {"aligned": {"aligned"}, "alignment": {"alignment"}, "inversion": {"inversion"},
                  "pasted": {"inversion"}, "edit": {"edits"}, "edit_pasted": {"edits"}, "transfer": {"transfers"},
                  "latent": {"latent"}, "deltas": {"deltas"}, "rendered": {"edits", "transfers"}}


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
        progress: show a tqdm bar on stderr (images/s, or s/img when slower than one image per second); log
            lines are printed above it.
        on_record: called after each manifest line with (record, summary so far).
    Returns:
        RunSummary of this call (summary.json accumulates every run's; see `run.manifest.updated_summary`).
    Raises:
        ValueError / FileNotFoundError for problems with the options, models or folders (before anything is
        written: a missing model creates no output folder); OutputFolderError (a ValueError) when the output
        folder cannot be written, at any point; problems with single files never raise, they are recorded.
    """
    options = options or RunOptions()
    options.check()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; give a folder")
    items = collect_inputs(inputs, options.pattern, [output] if output.exists() else [], options.read_latents)
    files = resolve_model_files(options, photos=any(not item.is_latent for item in items))
    lacking = _latents_without_restyle(items, options)
    if lacking and files.restyle is None:
        raise FileNotFoundError(_no_restyle_message(lacking, len(items), options))
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_folder_error(output, "creating it", e) from None
    with output_lock(output):
        return FolderRunner(items, output, options, progress, on_record, files, lacking).run()


def _latents_without_restyle(items: Sequence[InputFile], options: RunOptions) -> list[InputFile]:
    """Saved-latent inputs that a restyle transfer needs a ReStyle latent for and that hold none (header only;
    unreadable files are left to their own records)."""
    if not ("transfers" in options.products and options.transfers and options.transfer_latent == "restyle"):
        return []
    lacking = []
    for item in items:
        if not item.is_latent:
            continue
        try:
            header = read_safetensors_header(item.path)
        except (ValueError, OSError):
            continue
        if "restyle_latent" not in header:
            lacking.append(item)
    return lacking


def _no_restyle_message(lacking: list[InputFile], total: int, options: RunOptions) -> str:
    names = ", ".join(printable(item.path.name) for item in lacking[:3]) + (", ..." if len(lacking) > 3 else "")
    restyle = Path(options.restyle) if options.restyle else Path(options.models) / f"{RESTYLE_DOWNLOAD}.safetensors"
    return (f"{len(lacking)} of the {total} saved latents ({names}) hold no ReStyle-e4e latent (`run` stores one "
            f"only with --transfer), and the ReStyle-e4e encoder {restyle} that would compute them from the aligned "
            f"crops does not exist. Download it with `hyperstyle download {RESTYLE_DOWNLOAD}`, or pass "
            f"--transfer-latent w to render the W-encoder latents instead.")


@dataclass
class FilePlan:
    """What one input needs (`FolderRunner._plan`): its outputs, which to write now and from what."""
    file: InputFile
    out: str
    stat: os.stat_result | None
    keys: FileKeys
    kinds: dict[str, tuple[str, str | None]]
    todo: set[str]
    mode: str                                   # "invert" or "saved" (see steps.WorkItem)
    reuse_alignment: bool = False
    stale: list[str] = field(default_factory=list)      # earlier outputs of managed products not produced now
    carried: dict[str, str] = field(default_factory=dict)   # earlier outputs of other products: name -> kind
    previous_keys: dict = field(default_factory=dict)       # the last record's keys (carried outputs keep theirs)
    previous_outputs: set[str] = field(default_factory=set)  # what the last record listed (deletable names)
    note: str | None = None                     # the last record's note (kept when the photo is not read again)
    paste_source: Path | None = None
    alignment_file: Path | None = None
    cleanup_only: bool = False                  # finished, but outputs the options no longer produce are there


class FolderRunner:
    """One run over collected inputs: plan (what the manifest says is done and still valid), then read, render
    and write in batches, recording each file in the manifest as it finishes."""

    def __init__(self, items: list[InputFile], output: Path, options: RunOptions, progress: bool,
                 on_record: Callable[[dict, RunSummary], None] | None, files: ModelFiles | None = None,
                 lacking_restyle: Sequence[InputFile] = ()):
        self.items, self.output, self.options = items, output, options
        self.progress, self.on_record = progress, on_record
        self.files = files if files is not None else resolve_model_files(
            options, photos=any(not item.is_latent for item in items))
        self.lacking_restyle = list(lacking_restyle)
        self.summary = RunSummary(total=len(items), manifest=str(output / MANIFEST_NAME))
        self.models: RunModels | None = RunModels(options, self.files) if options.needs_models else None
        self.run_id = _now()
        self.restyle_latents: dict[Path, torch.Tensor] = {}
        self._run_records: dict[Path, dict[str, dict]] = {}
        self._bar = None
        self._manifest: Manifest | None = None

    # ------------------------------------------------------------------ planning
    def _plan(self) -> list[FilePlan]:
        """The plan of every file that needs work; counts the finished and skipped ones."""
        opts = self.options
        previous = read_manifest(self.output / MANIFEST_NAME)
        last_of = {item.key: previous.get(record_key(item.key)) for item in self.items}
        outs = assign_output_stems(self.items, opts,     # recorded names are checked there
                                   {} if opts.force else {k: r.get("out") for k, r in last_of.items() if r})
        pending = []
        for item in self.items:
            try:
                st = item.path.stat()
            except OSError:
                st = None
            last = last_of[item.key] or {}
            same_input = (st is not None and last.get("size") == st.st_size and last.get("mtime_ns") == st.st_mtime_ns)
            if same_input and not opts.force and last.get("status") == "skipped" and last.get("align") == opts.align:
                self.summary.skipped_before += 1
                continue
            plan = self._plan_file(item, outs[item.key], st, last, same_input and not opts.force)
            if plan is None:
                self.summary.already_done += 1
                continue
            pending.append(plan)
        return pending

    def _plan_file(self, item: InputFile, out: str, st: os.stat_result | None, last: dict,
                   trust_last: bool) -> FilePlan | None:
        """The plan of one file, None when it is done (every output there with its current key)."""
        opts = self.options
        paste_source = alignment_file = None
        if item.is_latent:
            paste_source, alignment_file = self._paste_source(item)
        kinds = output_kinds(out, opts, item.is_latent, pasted=paste_source is not None)
        saved = None
        if item.is_latent:
            deltas = item.path.with_name(item.path.name[:-len(LATENT_SUFFIX)] + "_deltas.safetensors")
            saved = (file_stat_identity(item.path), file_stat_identity(deltas))
        keys = file_keys(opts, self.files.ids, item.is_latent, saved)
        ok_before = trust_last and last.get("status") == "ok" and last.get("out") == out
        recorded = last.get("keys") if ok_before and isinstance(last.get("keys"), dict) else {}
        previous = _deletable_outputs(last)
        todo = {name for name, (kind, label) in kinds.items()
                if recorded.get(name) != keys.key(kind, label) or not (self.output / name).is_file()}
        managed = opts.managed
        stale = [n for n, kind in previous.items() if n not in kinds and _KIND_PRODUCTS[kind] & managed]
        carried = {n: kind for n, kind in previous.items() if n not in kinds and not _KIND_PRODUCTS[kind] & managed}
        if ok_before and not todo and not any((self.output / n).exists() for n in stale):
            return None
        mode = "saved" if item.is_latent else "invert"
        reuse_alignment = False
        if not item.is_latent and ok_before:
            saved_files = [f"{out}{LATENT_SUFFIX}", f"{out}_deltas.safetensors"]
            if (last.get("inversion_key") == keys.inversion and all(n in previous for n in saved_files)
                    and all(kinds[n][0] in _FROM_SAVED for n in todo)):
                mode = "saved"
            crop_files = [f"{out}_aligned.png", f"{out}_alignment.json"]
            reuse_alignment = (opts.align and last.get("alignment_key") == keys.alignment
                               and all(n in previous and n not in todo for n in crop_files))
        return FilePlan(item, out, st, keys, kinds, todo, mode, reuse_alignment=reuse_alignment, stale=stale,
                        carried=carried, previous_keys=last.get("keys") if isinstance(last.get("keys"), dict) else {},
                        previous_outputs=set(previous), note=last.get("note") if trust_last else None,
                        paste_source=paste_source, alignment_file=alignment_file,
                        cleanup_only=ok_before and not todo)

    def _paste_source(self, item: InputFile) -> tuple[Path | None, Path | None]:
        """(photo, alignment record) of a saved latent's run, when the options paste back and both are there: the
        photo its run recorded as `source`, unchanged since (size and mtime)."""
        opts = self.options
        if not (opts.align and opts.paste and "pasted" in opts.products):
            return None, None
        folder = item.path.parent
        stem = item.path.name[:-len(LATENT_SUFFIX)]
        alignment = folder / f"{stem}_alignment.json"
        if not alignment.is_file():
            return None, None
        if folder not in self._run_records:
            self._run_records[folder] = {r.get("out"): r for r in read_manifest(folder / MANIFEST_NAME).values()
                                         if r.get("status") == "ok" and isinstance(r.get("out"), str)}
        record = self._run_records[folder].get(stem)
        source = record.get("source") if record else None
        if not isinstance(source, str):
            return None, None
        photo = Path(source)
        st = file_stat_identity(photo)
        if st is None or st != [record.get("size"), record.get("mtime_ns")]:
            return None, None
        return photo, alignment

    # ------------------------------------------------------------------ the run
    def run(self) -> RunSummary:
        if self.lacking_restyle:
            self._complete_restyle_latents()
        pending = self._plan()
        manifest = Manifest(self.output / MANIFEST_NAME)
        bar = None
        if self.progress:
            # unit "img": tqdm shows img/s, or s/img when slower than one image per second
            bar = tqdm(total=len(pending), unit="img", desc="hyperstyle", dynamic_ncols=True)
        self._bar = bar
        self._manifest = manifest
        try:
            with logging_redirect_tqdm() if bar is not None else contextlib.nullcontext():
                self._run_pending(pending)
        except KeyboardInterrupt as e:
            e.summary = self.summary     # what was finished so far, for the caller's "stopped after ..." line
            raise
        finally:
            manifest.close()
            if bar is not None:
                bar.close()
        self._write_summary()
        return self.summary

    def _run_pending(self, pending: list[FilePlan]) -> None:
        if pending and self.models is not None:
            self.models.need(invert=any(p.mode == "invert" for p in pending),
                             edits=any(k == "edit" or k == "edit_pasted" for p in pending
                                       for n, (k, _) in p.kinds.items() if n in p.todo),
                             transfers=any(k == "transfer" for p in pending
                                           for n, (k, _) in p.kinds.items() if n in p.todo))
        if self.options.align and any(not p.file.is_latent and not p.reuse_alignment for p in pending):
            # dlib missing: one clear error now, not one per file
            detect_faces(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))
        batch_size = self.options.batch_size or self._default_batch_size()
        t0 = time.perf_counter()
        batch: list[WorkItem] = []
        for plan in pending:
            item = self._work_item(plan)     # made here: only the batch's items live
            if plan.cleanup_only:   # only outputs to delete (an edit was removed): nothing to compute
                self._record(item, "ok")
                continue
            if self._prepare(item) is None:
                continue
            if batch and batch[0].mode != item.mode:
                self._process(batch)
                batch = []
            batch.append(item)
            if len(batch) >= batch_size:
                self._process(batch)
                batch = []
        if batch:
            self._process(batch)
        self.summary.seconds = time.perf_counter() - t0

    def _work_item(self, plan: FilePlan) -> WorkItem:
        return WorkItem(plan.file, plan.out, plan.stat, time.perf_counter(), kinds=plan.kinds, todo=set(plan.todo),
                        mode=plan.mode, reuse_alignment=plan.reuse_alignment, paste_source=plan.paste_source,
                        alignment_file=plan.alignment_file, plan=plan)

    def _write_summary(self) -> None:
        path = self.output / SUMMARY_NAME
        try:
            with atomic_path(path) as tmp:
                tmp.write_text(updated_summary(path, self.run_id, self.summary) + "\n")
        except OSError as e:
            raise output_folder_error(self.output, f"writing {SUMMARY_NAME}", e) from None

    def _default_batch_size(self) -> int:
        m = self.models
        model = m and (m.hs or m.restyle or next(iter(m.transfers.values()), None))
        if model is None:
            return 4
        return 1 if next(model.parameters()).device.type == "cpu" else 4

    # ------------------------------------------------------------------ ReStyle latents for saved latents
    def _complete_restyle_latents(self) -> None:
        """Compute, once, the ReStyle-e4e latents that saved-latent inputs lack, from the aligned crops their run
        saved, and store them in those latent files (kept in memory when the folder cannot be written)."""
        crops = [(item, crop) for item in self.lacking_restyle if (crop := self._restyle_crop(item)) is not None]
        if not crops:
            return
        restyle = self.models.need(restyle=True).restyle
        spec = restyle.input_spec
        batch_size = self.options.batch_size or self._default_batch_size()
        for start in range(0, len(crops), batch_size):
            part, xs = [], []
            for item, crop in crops[start:start + batch_size]:
                try:
                    xs.append(pil_to_input(read_rgb(crop, self.options.max_pixels)[0], spec.height, spec.width))
                except (ImageReadError, OSError):   # unreadable crop: that latent's record says what is missing
                    continue
                part.append(item)
            if not part:
                continue
            latents = restyle_e4e_invert(torch.cat(xs), restyle, RESTYLE_STEPS).latent.float().cpu()
            for item, row in zip(part, latents):
                self.restyle_latents[item.path] = row[None]
        self._store_restyle_latents()
        log.info("computed the ReStyle-e4e latents of %d saved latent(s)", len(self.restyle_latents))

    def _restyle_crop(self, item: InputFile) -> Path | None:
        """The crop a saved latent was inverted from: its run's `<out>_aligned.png`, else (a --no-align run) the
        photo its run recorded, if unchanged."""
        stem = item.path.name[:-len(LATENT_SUFFIX)]
        aligned = item.path.parent / f"{stem}_aligned.png"
        if aligned.is_file():
            return aligned
        folder = item.path.parent
        record = next((r for r in read_manifest(folder / MANIFEST_NAME).values()
                       if r.get("status") == "ok" and r.get("out") == stem and r.get("align") is False), None)
        source = record.get("source") if record else None
        if isinstance(source, str):
            st = file_stat_identity(Path(source))
            if st is not None and st == [record.get("size"), record.get("mtime_ns")]:
                return Path(source)
        return None

    def _store_restyle_latents(self) -> None:
        by_folder: dict[Path, list[Path]] = {}
        for path in self.restyle_latents:
            by_folder.setdefault(path.parent, []).append(path)
        for folder, paths in by_folder.items():
            try:
                with output_lock(folder):
                    for path in paths:
                        _add_restyle_latent(path, self.restyle_latents[path])
            except (OSError, ValueError) as e:     # read-only, or another run is writing there
                log.warning("could not store the ReStyle-e4e latents in %s (%s); they are used for this run only",
                            printable(str(folder)), printable(str(e)))

    # ------------------------------------------------------------------ recording
    def _record(self, item: WorkItem, status: str, code: str | None = None, reason: str | None = None) -> None:
        plan: FilePlan = item.plan
        record = {"file": item.file.key, "status": status}
        # Outputs of products this run does not manage stay listed with their old keys (the run that owns
        # them checks those); a file that failed keeps none of its own.
        carried = {n: kind for n, kind in plan.carried.items() if (self.output / n).is_file()}
        kinds = {name: kind for name, (kind, _) in item.kinds.items()} if status == "ok" else {}
        keys = {name: plan.keys.key(kind, label) for name, (kind, label) in item.kinds.items()} if kinds else {}
        for name, kind in carried.items():
            kinds[name] = kind
            keys[name] = plan.previous_keys.get(name)
        if kinds:
            record["out"] = item.out
            record["outputs"] = list(kinds)
            record["kinds"], record["keys"] = kinds, keys
        if status == "ok":
            record["alignment_key"], record["inversion_key"] = plan.keys.alignment, plan.keys.inversion
            record["settings"] = self._settings()
            record["models"] = self.files.ids.to_dict()
        else:
            record["code"] = code
            record["reason"] = reason
        notes = item.notes or ([plan.note] if plan.note and status == "ok" else [])
        if notes:
            record["note"] = "; ".join(notes)
        if item.stat is not None:
            record["size"], record["mtime_ns"] = item.stat.st_size, item.stat.st_mtime_ns
        record["align"] = self.options.align
        record["source"] = os.path.abspath(item.file.path)
        item.timings["total"] = time.perf_counter() - item.t_start
        record["timings"] = {k: round(v, 4) for k, v in item.timings.items()}
        record["time"] = _now()
        record["run"] = self.run_id
        record = valid_text(record)     # as written: names with undecodable bytes spelled \xNN
        # Before the line: a kill in between leaves the old line, whose missing outputs make the file run again.
        # Deleted: earlier outputs of managed products that the options no longer produce and, for a file that
        # now fails, its earlier outputs of them: the folder then holds what a fresh run writes.
        failed = [] if status == "ok" else [n for n in item.kinds if n in plan.previous_outputs]
        self._delete_outputs(plan.stale + failed)
        self._manifest.append(record)
        s = self.summary
        setattr(s, status, getattr(s, status) + 1)
        if status == "ok" and item.mode == "saved" and not item.file.is_latent:
            s.reused += 1
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

    def _settings(self) -> dict:
        """The options that shape the outputs, readable (the keys hold them hashed)."""
        o = self.options
        return {"align": o.align, "align_size": o.align_size, "iterations": o.iterations,
                "dtype": str(o.dtype or "float32"), "deltas_dtype": o.stored_deltas_dtype,
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

    # ------------------------------------------------------------------ stage 1: read, check, align (run.steps)
    def _prepare(self, item: WorkItem) -> WorkItem | None:
        try:
            if item.file.is_latent:
                read_latent(item, self.options, self.restyle_latents)
                return item
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
            return item
        except Skip as s:
            self._record(item, s.status, s.code, s.reason)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the folder
            log.debug("preparing %s failed", printable(item.file.key), exc_info=True)
            self._record(item, "error", "failed", f"{type(e).__name__}: {e}")
        return None

    def _invert_instead(self, item: WorkItem) -> None:
        """The saved latent or deltas cannot be used: invert the photo, and write them again too."""
        item.mode = "invert"
        item.latent = item.restyle_latent = item.deltas = None
        item.todo |= {n for n, (kind, _) in item.kinds.items() if kind in ("latent", "deltas")}
        self.models.need(invert=True)
        if self.options.align:
            detect_faces(np.zeros((MIN_IMAGE_SIDE, MIN_IMAGE_SIDE, 3), np.uint8))

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
                write_outputs(item, i, rendered, self.options, self.output)
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
            self._record(item, "ok")


def _deletable_outputs(record: dict) -> dict[str, str]:
    """The outputs a record lists that the runner may delete, with their kinds (as recorded, else read from the
    name): plain names `<out>_*` with one of our suffixes (the manifest is data: a planted record cannot make us
    delete anything else)."""
    out, outputs = record.get("out"), record.get("outputs")
    if not is_plain_name(out) or not isinstance(outputs, list):
        return {}
    recorded = record.get("kinds") if isinstance(record.get("kinds"), dict) else {}
    protected = {MANIFEST_NAME, SUMMARY_NAME, LOCK_NAME}
    found = {}
    for name in outputs:
        if is_plain_name(name) and name.startswith(f"{out}_") and name.endswith(_OUTPUT_SUFFIXES) \
                and name not in protected:
            kind = recorded.get(name)
            found[name] = kind if kind in _KIND_PRODUCTS else _kind_of_name(name[len(out) + 1:])
    return found


def _kind_of_name(rest: str) -> str:
    """The kind of an output from its name after `<out>_` (records written before kinds were recorded)."""
    fixed = {"aligned.png": "aligned", "alignment.json": "alignment", "inversion.png": "inversion",
             "pasted.png": "pasted", "latent.safetensors": "latent", "deltas.safetensors": "deltas"}
    if rest in fixed:
        return fixed[rest]
    return "edit_pasted" if rest.endswith("_pasted.png") else "rendered"


def _add_restyle_latent(path: Path, restyle_latent: torch.Tensor) -> None:
    """Rewrite a saved latent file with its ReStyle-e4e latent added (metadata and other tensors kept)."""
    tensors = load_latent_file(path)
    metadata = {k: v for k, v in read_safetensors_metadata(path).items()
                if k not in (TAG_KEY, VERSION_KEY, LEGACY_VERSION_KEY)}
    extra = {k: v for k, v in tensors.items() if k != "latent"}
    extra["restyle_latent"] = restyle_latent
    save_latent(path, tensors["latent"], extra, metadata)
