"""The run's records in the output folder: the append-only manifest, the folder lock and the summary.

Every input file gets a line in `OUTPUT/manifest.jsonl` after its outputs are complete; the last line per file
wins. `output_lock` keeps a second run out of the folder while one is writing.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .options import LOCK_NAME

try:
    import fcntl    # POSIX only: on Windows the output folder is not locked (one run per folder is the user's job)
except ImportError:
    fcntl = None

__all__ = ["read_manifest", "Manifest", "output_lock", "RunSummary"]

log = logging.getLogger(__name__)


def read_manifest(path: str | os.PathLike) -> dict[str, dict]:
    """Last record per file of a manifest (lines that do not parse, e.g. a torn last line, are ignored)."""
    path = Path(path)
    last: dict[str, dict] = {}
    if not path.exists():
        return last
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("file"), str):
                last[record["file"]] = record
    return last


class Manifest:
    """Append-only JSONL; every line is flushed and fsynced before the next file starts."""

    def __init__(self, path: Path):
        self.path = path
        self._file = open(path, "a+b")
        self._file.seek(0, os.SEEK_END)
        if self._file.tell():
            self._file.seek(-1, os.SEEK_END)
            if self._file.read(1) != b"\n":     # a torn line from a killed run: start on a fresh line
                self._file.write(b"\n")
        self._file.seek(0, os.SEEK_END)

    def append(self, record: dict) -> None:
        self._file.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


@contextlib.contextmanager
def output_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on the output folder (released by the OS even on kill -9); then remove stale temp files."""
    handle = open(folder / LOCK_NAME, "a")
    try:
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise ValueError(f"another hyperstyle run is writing to {folder}; wait for it to finish or choose "
                                 f"another output folder") from None
        stale = [p for p in folder.glob(".*.partial") if p.is_file()]
        for p in stale:     # left by a killed run (atomic_path's temp files); safe under the lock
            p.unlink()
        if stale:
            log.info("removed %d unfinished temp file(s) of an interrupted run", len(stale))
        yield
    finally:
        handle.close()


@dataclass
class RunSummary:
    """Counts of one `run_folder` call. `images_per_second` = ok files / processing wall time (models loaded)."""
    total: int = 0
    ok: int = 0
    skipped: int = 0
    error: int = 0
    already_done: int = 0
    skipped_before: int = 0
    seconds: float = 0.0
    codes: dict[str, int] = field(default_factory=dict)
    manifest: str = ""

    @property
    def images_per_second(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        d = dict(self.__dict__)
        d["images_per_second"] = round(self.images_per_second, 4)
        return d

    def line(self) -> str:
        parts = [f"{self.ok} ok", f"{self.skipped} skipped", f"{self.error} errors"]
        if self.already_done or self.skipped_before:
            parts.append(f"{self.already_done} already done, {self.skipped_before} skipped before")
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.codes.items()))
        return (f"{self.total} files: " + ", ".join(parts) + (f" ({codes})" if codes else "")
                + f"; {self.images_per_second:.2f} images/s")
