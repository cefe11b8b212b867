"""The format of a run's output folder, as readers of it need it: the fixed file names, the manifest's records
(`read_manifest`, `ManifestRecord`), which recorded names may be used (`is_plain_name`), and the rule that gives
clashing input names distinct stems (`unique_stems`, `named_png_files`).

The folder runner (run/) writes this format; the metrics (metrics/) read a run's folder with it, and the nodes
save PNG batches under input file names with it.
"""
from __future__ import annotations

import json
import os
from pathlib import Path, PurePath
from typing import Iterator, Sequence, TypedDict

from .folders import escape_undecodable

__all__ = ["MANIFEST_NAME", "SUMMARY_NAME", "LOCK_NAME", "ManifestRecord", "read_manifest", "is_plain_name",
           "unique_stems", "named_png_files", "text_stem", "clashing_stems", "name_candidates"]

MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".hyperstyle_run.lock"

_SEPARATORS = {"/", "\\"} if os.name == "nt" else {"/"}


class ManifestRecord(TypedDict, total=False):
    """One line of manifest.jsonl, as the runner writes it (`run.runner`). Read back, a record is data: check a
    field's type before use (a planted line may hold anything)."""
    file: str                       # the input's key (name inside the input folder, or the path as given)
    status: str                     # "ok", "skipped" or "error"
    code: str | None                # why not ok: no_face, truncated, non_finite, ... (not on ok lines)
    reason: str | None              # the same in words
    out: str                        # the stem of its outputs
    outputs: list[str]              # its output files
    kinds: dict[str, str]           # output -> kind (aligned, inversion, edit, ...)
    keys: dict[str, str | None]     # output -> key of what it depends on (run.state)
    alignment_key: str              # ok lines: the keys of the alignment and the inversion
    inversion_key: str
    settings: dict[str, object]     # ok lines: the options that shape the outputs, readable
    models: dict[str, object]       # ok lines: the model files' identities
    note: str                       # what was converted on reading (EXIF rotation, CMYK, ...)
    size: int                       # the input's size and modification time when it was processed
    mtime_ns: int
    align: bool                     # whether the input was aligned
    source: str                     # the input's absolute path
    timings: dict[str, float]       # stage -> seconds
    time: str                       # when the line was written (ISO 8601, UTC)
    run: str                        # the run it belongs to (its start time)


def read_manifest(path: str | os.PathLike) -> dict[str, ManifestRecord]:
    """Last record per file of a manifest. Lines that do not parse (a torn last line, anything planted) are
    ignored: the manifest is data, and its `out` names are checked again before use (`is_plain_name`)."""
    path = Path(path)
    last: dict[str, ManifestRecord] = {}
    if not path.is_file():
        return last
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except (ValueError, RecursionError):    # bad JSON, a 5000-digit number, [[[[... nested too deep
                continue
            if isinstance(record, dict) and isinstance(record.get("file"), str):
                last[record["file"]] = record
    return last


def is_plain_name(name: object) -> bool:
    """Whether `name` can only name a file directly inside a folder: valid non-empty text, no folder separator,
    drive or NUL, not "." or "..". Output names read back from a manifest are used only if they are."""
    if not isinstance(name, str) or name in ("", ".", "..") or "\0" in name:
        return False
    if any(sep in name for sep in _SEPARATORS) or PurePath(name).name != name or PurePath(name).anchor:
        return False
    return escape_undecodable(name) == name


def text_stem(stem: str) -> str:
    """Undecodable bytes (lone surrogates) -> _xNN: output names, and the manifest naming them, stay valid text."""
    escaped = escape_undecodable(stem)
    return stem if escaped == stem else escaped.replace("\\", "_")


def clashing_stems(stems: Sequence[str]) -> set[str]:
    """Lower-cased stems that more than one name has."""
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return {stem for stem, n in counts.items() if n > 1}


def name_candidates(stem: str, suffix: str, clashing: set[str]) -> Iterator[str]:
    """stem (when no other name shares it), then stem_ext, stem_ext_2, stem_ext_3, ..."""
    stem = stem or "image"
    if stem.lower() not in clashing:
        yield stem
    ext = suffix.lstrip(".").lower()
    base = f"{stem}_{ext}" if ext else stem
    yield base
    n = 2
    while True:
        yield f"{base}_{n}"
        n += 1


def unique_stems(names: Sequence[str]) -> list[str]:
    """File names -> distinct stems by the rule `run_folder` uses: a.jpg, a.png, b.jpg -> a_jpg, a_png, b."""
    paths = [Path(Path(n).name) for n in names]
    stems = [text_stem(p.stem) for p in paths]
    clashing = clashing_stems(stems)
    taken: set[str] = set()
    out = []
    for p, stem in zip(paths, stems):
        stem = next(c for c in name_candidates(stem, p.suffix, clashing) if c.lower() not in taken)
        taken.add(stem.lower())
        out.append(stem)
    return out


def named_png_files(names: Sequence[str], n_images: int, suffix: str = "") -> list[str]:
    """PNG file names for `n_images` images saved under input file names: photo.jpg -> photo<suffix>.png.

    With k images per name (an edit sweep) they are photo<suffix>_01.png .. _k; clashing stems get
    `unique_stems`' treatment (a.jpg, a.png -> a_jpg, a_png). Raises ValueError for a count that does not divide.
    """
    if not names:
        raise ValueError("no file names given")
    if any(c in suffix for c in "/\\:"):
        raise ValueError(f"suffix {suffix!r} must not contain / \\ or :")
    if n_images % len(names):
        raise ValueError(f"{n_images} images for {len(names)} names; give one image per name (or the same number "
                         f"per name, e.g. from an edit sweep)")
    per_name = n_images // len(names)
    stems = unique_stems(list(names))
    return [stems[k // per_name] + suffix + (f"_{k % per_name + 1:02d}" if per_name > 1 else "") + ".png"
            for k in range(n_images)]
