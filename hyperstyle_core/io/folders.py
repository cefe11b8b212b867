"""The one folder lister: which files of a folder are inputs, in which order.

`list_folder` is shared by the folder runner (`hyperstyle run` and friends), the `invert` command and the
HyperStyle Load Image Folder node; `IMAGE_SUFFIXES` is the one list of image file types they take.

File names are whatever the disk holds: `escape_undecodable` turns a name into valid text for manifests and
metadata (an undecodable byte -> \\xNN), `printable` makes it safe to show on a terminal (no escape sequences).
"""
from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

# Every type `io.images.read_rgb` decodes (GIF: its first frame). Other files are recorded as not_an_image_type.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
IMAGE_PATTERN = ";".join(f"*{suffix}" for suffix in IMAGE_SUFFIXES)    # for `list_folder`: the image files only
LATENT_SUFFIX = "_latent.safetensors"     # a saved latent; its weight deltas are `<stem>_deltas.safetensors`


@dataclass(frozen=True)
class InputFile:
    key: str              # how the manifest names it: the name inside the input folder, or the path as given
    path: Path
    is_latent: bool = False   # a `*_latent.safetensors` read by edit/transfer instead of an image


def match_patterns(name: str, pattern: str) -> bool:
    """Whether `name` matches one of the ";"-separated glob patterns (case-insensitive)."""
    patterns = [p.strip() for p in pattern.split(";") if p.strip()] or ["*"]
    return any(fnmatch.fnmatch(name.lower(), p.lower()) for p in patterns)


def _escape_char(c: str) -> str:
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:    # an undecodable byte, kept by os.fsdecode as a lone surrogate
        return f"\\x{code - 0xDC00:02x}"
    if 0xD800 <= code <= 0xDFFF:    # any other lone surrogate (Windows names may hold them)
        return f"\\u{code:04x}"
    return c


def escape_undecodable(name: str) -> str:
    """`name` as valid text: every character that cannot be written as UTF-8 (an undecodable byte of a file name,
    which os.fsdecode keeps as a lone surrogate) written as \\xNN (other lone surrogates: \\uNNNN). Names that are
    valid text are returned unchanged. How manifests, file metadata and messages record a file name."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return "".join(_escape_char(c) for c in name)


def printable(text: str) -> str:
    """`text` safe to show on a terminal: control characters (escape sequences, line breaks), invisible formatting
    characters and undecodable bytes written as Python escapes (\\x1b, \\n, \\u202e, \\xff); the rest unchanged."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape_char(c) if 0xD800 <= ord(c) <= 0xDFFF else repr(c)[1:-1]
                   for c in text)


def list_folder(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Files (not sub-folders, not hidden) in `folder` whose names match `pattern`, sorted by name.

    Broken links and entries that cannot be looked at (a symlink loop, no permission) are listed: reading them
    reports the problem for that file alone. Raises FileNotFoundError / ValueError for a missing folder, a file
    given instead of a folder, or a folder that cannot be read.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder")
    found = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                if not entry.name.startswith(".") and not _is_folder(entry) and match_patterns(entry.name, pattern):
                    found.append(Path(entry.path))
    except OSError as e:
        raise ValueError(f"folder {folder} cannot be read ({e.strerror or e}); check its permissions") from None
    return sorted(found, key=lambda p: p.name)


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:     # a symlink loop or a link we may not follow: not a folder; reading it says what is wrong
        return False


def collect_inputs(paths: Sequence[str | os.PathLike], pattern: str = "*", exclude: Sequence[Path] = (),
                   read_latents: bool = False) -> list[InputFile]:
    """Files and folders -> InputFile list. A single folder gives keys = file names; otherwise keys are the paths
    as given (folder entries: folder/name). Folders are not searched recursively; an `exclude` folder is refused.
    With `read_latents`, `*_latent.safetensors` files are latent inputs (edit, transfer); otherwise they are just
    files that are not images."""
    if not paths:
        raise ValueError("no inputs given: pass a folder (or image files)")
    excluded = {p.resolve() for p in exclude}
    items: list[InputFile] = []
    single_folder = len(paths) == 1 and Path(paths[0]).is_dir()
    for p in map(Path, paths):
        if p.is_dir():
            if p.resolve() in excluded:
                raise ValueError(f"the output folder {p} cannot also be an input: its results would be read as inputs")
            for f in list_folder(p, pattern):
                key = f.name if single_folder else (p / f.name).as_posix()
                items.append(InputFile(key, f, read_latents and f.name.endswith(LATENT_SUFFIX)))
        elif p.exists() or p.is_symlink():
            items.append(InputFile(p.as_posix(), p, read_latents and p.name.endswith(LATENT_SUFFIX)))
        else:
            raise FileNotFoundError(f"input {p} does not exist; pass image files or folders")
    seen, unique = set(), []
    for item in items:
        if item.key not in seen:
            seen.add(item.key)
            unique.append(item)
    return unique
