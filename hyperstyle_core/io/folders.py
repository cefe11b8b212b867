"""The one folder lister: which files of a folder are inputs, in which order.

`list_folder` is shared by the folder runner (`hyperstyle run` and friends), the `invert` command and the
HyperStyle Load Image Folder node; `IMAGE_SUFFIXES` is the one list of image file types they take.
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


def list_folder(folder: str | os.PathLike, pattern: str = "*") -> list[Path]:
    """Files (not sub-folders, not hidden) in `folder` whose names match `pattern`, sorted by name.

    Broken links are listed (reading them reports the problem). Raises FileNotFoundError / ValueError for a
    missing folder or a file given instead of a folder.
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"folder {folder} does not exist; check the path")
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder")
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.startswith(".") or entry.is_dir():
                continue
            if match_patterns(entry.name, pattern):
                found.append(Path(entry.path))
    return sorted(found, key=lambda p: p.name)


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
