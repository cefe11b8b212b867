"""Inputs given as a list file (`hyperstyle run --input-list FILE`: one path per line), read in groups so that the
driver never holds millions of paths at once.

Output names are made unique within the set being named (`run.naming`: a.jpg and b/a.png -> a_jpg, a_png), so a
group must hold every input whose outputs could clash. Every output name of an input starts with `<out>_`, and
`<out>` starts with the input's stem, so the outputs of two inputs can only clash when their stems share the first
`_`-separated token (case-insensitively): a list longer than `group_size` is spread over groups by that token
(through temporary files), and each group is named and planned on its own with exactly the names one big set gets.

Lines are paths as given (relative ones from the current folder), recorded under that name; blank lines and lines
starting with `#` are ignored, a repeated path is taken once. A path that does not exist is recorded as an error
of that file, not a reason to stop (lists of millions go stale).
"""
from __future__ import annotations

import os
import tempfile
import zlib
from pathlib import Path
from typing import Iterator

from ..io.folders import LATENT_SUFFIX, InputFile, escape_undecodable

__all__ = ["check_input_list", "read_input_list", "input_list_groups", "clash_token", "GROUP_SIZE"]

GROUP_SIZE = 50_000     # paths named and planned together (a few tens of MB of plans on the driver)


def check_input_list(path: str | os.PathLike) -> Path:
    """`path` as a Path; raises FileNotFoundError / ValueError for a list that is missing or not a file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input list {path} does not exist; give a text file with one image path per line")
    if not path.is_file():
        raise ValueError(f"input list {path} is not a file; give a text file with one image path per line")
    return path


def read_input_list(path: str | os.PathLike) -> Iterator[str]:
    """The paths of a list file, streamed (blank lines and `#` comments left out)."""
    # surrogateescape: names that are not valid UTF-8 come back as the bytes on disk, as os.listdir gives them
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line in f:
            entry = line.rstrip("\r\n")
            if entry.strip() and not entry.lstrip().startswith("#"):
                yield entry


def clash_token(entry: str) -> str:
    """The first `_`-separated token of an input's stem, lower-cased: inputs whose outputs could clash share it."""
    name = Path(entry).name
    stem = name[:-len(LATENT_SUFFIX)] if name.endswith(LATENT_SUFFIX) else Path(name).stem
    return escape_undecodable(stem).replace("\\", "_").lower().split("_")[0]


def _input_file(entry: str) -> InputFile:
    path = Path(entry)
    return InputFile(path.as_posix(), path)


def _unique(entries: Iterator[str]) -> list[InputFile]:
    seen: set[str] = set()
    items = []
    for entry in entries:
        item = _input_file(entry)
        if item.key not in seen:
            seen.add(item.key)
            items.append(item)
    return items


def input_list_groups(path: str | os.PathLike, group_size: int = GROUP_SIZE) -> Iterator[list[InputFile]]:
    """The inputs of a list file in groups whose outputs cannot clash with another group's (see the module
    docstring); a short list is one group, in its order. The list is checked now, read as the groups are taken.
    Raises FileNotFoundError / ValueError for a list that is missing or not a file."""
    return _groups(check_input_list(path), group_size)


def _groups(path: Path, group_size: int) -> Iterator[list[InputFile]]:
    count = sum(1 for _ in read_input_list(path))
    if count <= group_size:
        yield _unique(read_input_list(path))
        return
    n_groups = -(-count // group_size)
    with tempfile.TemporaryDirectory(prefix="hyperstyle_inputs_") as spill:
        files = [open(Path(spill) / f"{g}.txt", "w", encoding="utf-8", errors="surrogateescape", newline="\n")
                 for g in range(n_groups)]
        try:
            for entry in read_input_list(path):
                group = zlib.crc32(clash_token(entry).encode("utf-8", "surrogateescape")) % n_groups
                files[group].write(entry + "\n")
        finally:
            for f in files:
                f.close()
        for g in range(n_groups):
            items = _unique(read_input_list(Path(spill) / f"{g}.txt"))
            if items:
                yield items
