"""Planning a folder run: from the manifest and the current options, what each input still needs.

A file is done when its input is unchanged and every output it should have exists with its current key
(`run.state`); otherwise its plan lists the outputs to write now, whether they can come from the saved latent and
deltas (no inversion) and the saved crop (no alignment), and the earlier outputs the options no longer produce
(deleted when the file is recorded). Records are data: only plain names `<out>_*` that our runner recorded for
that file are ever deletable (`deletable_outputs`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io.folders import LATENT_SUFFIX, InputFile
from ..io.run_folder import LOCK_NAME, MANIFEST_NAME, SUMMARY_NAME, ManifestRecord, is_plain_name, read_manifest
from .manifest import RunSummary, record_key
from .models import ModelFiles
from .naming import assign_output_stems, output_kinds
from .options import RunOptions
from .state import FileKeys, file_keys, file_stat_identity
from .work import Mode

__all__ = ["FilePlan", "RunPlanner", "deletable_outputs"]

# Outputs a photo can get from its saved latent and deltas (and saved or repeated alignment), without inversion.
_FROM_SAVED = {"aligned", "alignment", "edit", "edit_pasted", "transfer", "latent", "deltas"}
_OUTPUT_SUFFIXES = (".png", ".json", ".safetensors")
# The product (RunOptions.products) each kind of output belongs to; "rendered": an edit or transfer image of a
# record that did not say which.
_KIND_PRODUCTS = {"aligned": {"aligned"}, "alignment": {"alignment"}, "inversion": {"inversion"},
                  "pasted": {"inversion"}, "edit": {"edits"}, "edit_pasted": {"edits"}, "transfer": {"transfers"},
                  "latent": {"latent"}, "deltas": {"deltas"}, "rendered": {"edits", "transfers"}}



@dataclass
class FilePlan:
    """What one input needs (`RunPlanner.plan`): its outputs, which to write now and from what."""
    file: InputFile
    out: str
    stat: os.stat_result | None
    keys: FileKeys
    kinds: dict[str, tuple[str, str | None]]
    todo: set[str]
    mode: Mode                                  # "invert" or "saved" (see run.work.Mode)
    reuse_alignment: bool = False
    stale: list[str] = field(default_factory=list)      # earlier outputs of managed products not produced now
    carried: dict[str, str] = field(default_factory=dict)   # earlier outputs of other products: name -> kind
    previous_keys: dict = field(default_factory=dict)       # the last record's keys (carried outputs keep theirs)
    previous_outputs: set[str] = field(default_factory=set)  # what the last record listed (deletable names)
    note: str | None = None                     # the last record's note (kept when the photo is not read again)
    paste_source: Path | None = None
    alignment_file: Path | None = None
    cleanup_only: bool = False                  # finished, but outputs the options no longer produce are there


class RunPlanner:
    """Plans one run over collected inputs; counts the finished and skipped-before files in `summary`."""

    def __init__(self, items: list[InputFile], output: Path, options: RunOptions, files: ModelFiles,
                 summary: RunSummary):
        self.items, self.output, self.options, self.files, self.summary = items, output, options, files, summary
        self._run_records: dict[Path, dict[str, ManifestRecord]] = {}

    def plan(self) -> list[FilePlan]:
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

    def _plan_file(self, item: InputFile, out: str, st: os.stat_result | None, last: ManifestRecord,
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
        previous = deletable_outputs(last)
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



def deletable_outputs(record: ManifestRecord) -> dict[str, str]:
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

