"""The run's records in the output folder: the append-only manifest, the folder lock and the summary.

Every input file gets a line in `OUTPUT/manifest.jsonl` after its outputs are complete; the last line per file
wins (`read_manifest`: the folder's format lives in io.run_folder, shared with its readers). `output_lock` keeps
a second run out of the folder while one is writing. Records are valid JSON text: file names are written with
`escape_undecodable` (bad\\xff.png), and `record_key` gives the name a file is recorded under. A folder that
cannot be written (permissions, read-only, full disk) raises `OutputFolderError`.
"""
from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from ..io.folders import escape_undecodable
from ..io.run_folder import LOCK_NAME, ManifestRecord, read_manifest

try:
    import fcntl    # POSIX only: on Windows the output folder is not locked (one run per folder is the user's job)
except ImportError:
    fcntl = None

__all__ = ["read_manifest", "record_key", "valid_text", "Manifest", "output_lock", "RunSummary", "OutputFolderError",
           "output_folder_error", "FOLDER_ERRNOS", "updated_summary", "throughput"]

log = logging.getLogger(__name__)

# Write failures that are about the output folder, not about one input: every later file would fail the same way.
FOLDER_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EEXIST}
_HINTS = {errno.ENOSPC: "the disk is full; free some space or choose another output folder",
          errno.EDQUOT: "the disk quota is used up; free some space or choose another output folder",
          errno.EROFS: "it is on a read-only file system; choose another output folder",
          errno.EACCES: "permission denied; choose a folder you can write to",
          errno.EPERM: "permission denied; choose a folder you can write to",
          errno.ENOTDIR: "a part of its path is a file, not a folder; choose another output folder",
          errno.EEXIST: "something that is not a folder is in its path; choose another output folder"}


class OutputFolderError(ValueError):
    """The output folder cannot be written (permissions, read-only, full disk, a file in its path): a problem of
    the setup, not of an input, so the run stops (the CLI exits with 2). Finished files keep their records."""


def output_folder_error(folder: Path, doing: str, e: OSError) -> OutputFolderError:
    """OutputFolderError for `e`, raised while `doing` something in the output folder `folder`."""
    hint = _HINTS.get(e.errno, f"{e.strerror or e}; check the output folder")
    return OutputFolderError(f"cannot write to the output folder {escape_undecodable(str(folder))} ({doing}): {hint}")


def record_key(key: str) -> str:
    """The name an input file is recorded under in the manifest (its key as valid text)."""
    return escape_undecodable(key)


def valid_text(value: object) -> object:
    """`value` with every string (keys too) valid text: names with undecodable bytes cannot be written as UTF-8."""
    if isinstance(value, str):
        return escape_undecodable(value)
    if isinstance(value, dict):
        return {valid_text(k): valid_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [valid_text(v) for v in value]
    return value


def _open_no_follow(path: Path, flags: int) -> int:
    """os.open(path, flags | O_CREAT) that refuses a symbolic link: a link planted in the output folder would
    otherwise send our appends to wherever it points."""
    try:
        return os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    except OSError as e:
        if path.is_symlink():
            raise OSError(e.errno, f"{path.name} is a symbolic link; remove it (the run writes only real files in "
                                   f"its output folder)") from None
        raise


class Manifest:
    """Append-only JSONL; every line is flushed and fsynced before the next file starts. Write failures raise
    OutputFolderError."""

    def __init__(self, path: Path):
        self.path = path
        self._broken = False
        try:
            self._file = os.fdopen(_open_no_follow(path, os.O_RDWR | os.O_APPEND), "a+b")
            self._file.seek(0, os.SEEK_END)
            if self._file.tell():
                self._file.seek(-1, os.SEEK_END)
                if self._file.read(1) != b"\n":     # a torn line from a killed run: start on a fresh line
                    self._file.write(b"\n")
            self._file.seek(0, os.SEEK_END)
        except OSError as e:
            raise output_folder_error(path.parent, f"opening {path.name}", e) from None

    def append(self, record: ManifestRecord) -> None:
        try:
            self._file.write((json.dumps(valid_text(record), ensure_ascii=False) + "\n").encode("utf-8"))
            self._file.flush()
            os.fsync(self._file.fileno())
        except OSError as e:
            self._broken = True
            raise output_folder_error(self.path.parent, f"writing {self.path.name}", e) from None

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as e:
            if not self._broken:    # after a failed append the error is already on its way up
                raise output_folder_error(self.path.parent, f"closing {self.path.name}", e) from None


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on the output folder (released by the OS even on kill -9); then remove stale temp files.
    Raises OutputFolderError when the folder cannot be written."""
    try:
        handle = os.fdopen(_open_no_follow(folder / LOCK_NAME, os.O_WRONLY | os.O_APPEND), "a")
    except OSError as e:
        raise output_folder_error(folder, f"creating {LOCK_NAME}", e) from None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(f"another hyperstyle run is writing to {folder}; wait for it to finish or choose "
                                 f"another output folder") from None
        stale = [p for p in folder.glob(".*.partial") if p.is_file()]
        try:
            for p in stale:     # left by a killed run (atomic_path's temp files); safe under the lock
                p.unlink()
        except OSError as e:
            raise output_folder_error(folder, "removing unfinished temp files", e) from None
        if stale:
            log.info("removed %d unfinished temp file(s) of an interrupted run", len(stale))
        yield
    finally:
        handle.close()


@dataclass
class RunSummary:
    """Counts of one `run_folder` call. `images_per_second` = ok files / processing wall time (models loaded);
    `reused`: photos rendered from their saved latent and deltas (no inversion)."""
    total: int = 0
    ok: int = 0
    skipped: int = 0
    error: int = 0
    already_done: int = 0
    skipped_before: int = 0
    reused: int = 0
    seconds: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    manifest: str = ""

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["seconds"] = round(self.seconds, 3)
        d["images_per_second"] = _significant(self.images_per_second)
        return d

    def line(self) -> str:
        parts = [f"{self.ok} ok", f"{self.skipped} skipped", f"{self.error} errors"]
        if self.already_done or self.skipped_before:
            parts.append(f"{self.already_done} already done, {self.skipped_before} skipped before")
        if self.reused:
            parts.append(f"{self.reused} rendered from saved latents")
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items()))
        speed = f"; {throughput(self.ok, self.seconds)}" if self.ok else ""
        return f"{self.total} files: " + ", ".join(parts) + (f" ({codes})" if codes else "") + speed


def _significant(x: float, digits: int = 4) -> float:
    """`x` rounded to `digits` significant digits (0.000123 stays readable, unlike round(x, 4))."""
    return float(f"{x:.{digits}g}")


def throughput(images: int, seconds: float) -> str:
    """"2.5 images/s", or under one image per second "0.041 images/s (24.1 s per image)"."""
    if images <= 0 or seconds <= 0:
        return "no images processed"
    rate = images / seconds
    if rate >= 1:
        return f"{rate:.3g} images/s"
    return f"{rate:.2g} images/s ({seconds / images:.1f} s per image)"


MAX_RUNS_KEPT = 100     # summary.json keeps the latest runs' entries; the totals count every run


def updated_summary(path: Path, run_id: str, summary: RunSummary) -> str:
    """summary.json after this run, as JSON text: `runs` (the latest MAX_RUNS_KEPT runs, each with its counts,
    seconds and images_per_second) and, at the top level, totals over every run (`runs_total`, ok, skipped, error,
    reused, seconds, images_per_second, codes), so a re-run that does nothing keeps the real run's statistics.
    An unreadable earlier summary (damaged, planted) starts the totals again."""
    previous: dict = {}
    try:
        loaded = json.loads(path.read_text("utf-8"))
        previous = loaded if isinstance(loaded, dict) and isinstance(loaded.get("runs"), list) else {}
    except (OSError, ValueError, RecursionError):
        previous = {}
    this = {"run": run_id, **summary.to_dict()}
    runs = [r for r in previous.get("runs", []) if isinstance(r, dict)][-(MAX_RUNS_KEPT - 1):] + [this]
    totals = {"runs_total": _count(previous, "runs_total") + 1}
    for key in ("ok", "skipped", "error", "reused"):
        totals[key] = _count(previous, key) + getattr(summary, key)
    # A run that found every file done adds no processing time: the totals keep the real runs' throughput.
    worked = summary.ok + summary.skipped + summary.error > 0
    seconds = _number(previous, "seconds") + (summary.seconds if worked else 0.0)
    codes = {k: v for k, v in (previous.get("codes") or {}).items() if isinstance(v, int)} \
        if isinstance(previous.get("codes"), dict) else {}
    for k, v in summary.codes.items():
        codes[k] = codes.get(k, 0) + v
    rate = _significant(totals["ok"] / seconds) if seconds > 0 else 0.0
    if not worked and "images_per_second" in previous:
        rate = _number(previous, "images_per_second")
    totals.update(seconds=round(seconds, 3), codes=codes, images_per_second=rate)
    result = {**totals, "total": summary.total, "already_done": summary.already_done,
              "skipped_before": summary.skipped_before, "manifest": summary.manifest, "last_run": run_id,
              "runs": runs}
    return json.dumps(valid_text(result), indent=1)


def _count(d: dict, key: str) -> int:
    v = d.get(key)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else 0


def _number(d: dict, key: str) -> float:
    v = d.get(key)
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
    return float(v) if ok else 0.0
