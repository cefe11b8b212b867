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
    error    reading or processing failed: empty, truncated, undecodable, unreadable, a model error. Re-running
             retries it (a file still being copied looks truncated) and appends a new line.

Resume: the manifest is append-only and the last line per file wins. A file is done when its last line is `ok`,
the file is unchanged (size, mtime) and every output the current options ask for exists; done files get no new
line. A run killed at any point leaves no partial outputs (stray temp files are removed by the next run) and at
most one file whose outputs exist without an `ok` line; that file is processed again.

Output names: `<out>_aligned.png`, `<out>_alignment.json`, `<out>_inversion.png`, `<out>_pasted.png`,
`<out>_<edit>.png`, `<out>_<edit>_pasted.png`, `<out>_<transfer>.png`, `<out>_latent.safetensors`,
`<out>_deltas.safetensors`, where `<out>` is the input's stem. Inputs whose stems clash (a.jpg and a.png, or
A.jpg and a.jpg on a case-insensitive disk) are all named `<stem>_<extension>` (a_jpg, a_png), then a counter;
a name recorded by an earlier run is kept.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fnmatch
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
LATENT_SUFFIX = "_latent.safetensors"
MANIFEST_NAME = "manifest.jsonl"
SUMMARY_NAME = "summary.json"
LOCK_NAME = ".hyperstyle_run.lock"
DEFAULT_MAX_PIXELS = 80_000_000       # a 80 MP photo decodes to 240 MB; PIL itself warns at 89 MP
MIN_SIDE = 64                          # dlib finds faces down to ~40 px; the encoders need a real picture
PRODUCTS = ("aligned", "alignment", "inversion", "pasted", "edits", "transfers", "latent", "deltas")
RESERVED_LABELS = {"aligned", "alignment", "inversion", "pasted", "latent", "deltas"}
SKIP_CODES = {"not_an_image_type", "no_face", "too_small", "too_large"}
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# --------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class Edit:
    """An InterFaceGAN edit: direction `name` (a file in the models folder) times `factor`."""
    name: str
    factor: float


def parse_edits(specs: str | Iterable[str] | None) -> tuple[Edit, ...]:
    """"age=+3,smile=-1" (or several such strings) -> (Edit('age', 3.0), Edit('smile', -1.0))."""
    if specs is None:
        return ()
    if isinstance(specs, str):
        specs = [specs]
    edits = []
    for spec in specs:
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            name, sep, value = part.partition("=")
            name = name.strip()
            try:
                factor = float(value)
            except ValueError:
                factor = None
            if not sep or not _LABEL.match(name) or factor is None or not np.isfinite(factor):
                raise ValueError(f"cannot read the edit {part!r}: write NAME=FACTOR, e.g. age=+3 or smile=-1.5, "
                                 f"several separated by commas (NAME is a direction file in the models folder)")
            edits.append(Edit(name, factor))
    return tuple(edits)


def edit_labels(edits: Sequence[Edit]) -> list[str]:
    """File-name label per edit: the direction name, plus the factor when a direction is used more than once."""
    counts: dict[str, int] = {}
    for e in edits:
        counts[e.name] = counts.get(e.name, 0) + 1
    labels = [e.name if counts[e.name] == 1 else f"{e.name}{e.factor:+g}" for e in edits]
    if len(set(labels)) != len(labels):
        raise ValueError(f"the edits {', '.join(labels)} repeat one another; give each direction/factor once")
    return labels


@dataclass
class RunOptions:
    """What `run_folder` does. Paths may be str or Path.

    Attributes:
        models: folder with hyperstyle_ffhq / faces_w_encoder (.safetensors), directions and generators.
        hyperstyle, w_encoder, restyle: explicit model files (default: the official names in `models`).
        align: FFHQ-align each photo (dlib) first; False means the inputs are aligned crops (resized to the
            encoder input, as `invert`).
        align_size: side of the aligned crop written as `_aligned.png` (official align script: 1024).
        iterations: HyperStyle refinement iterations (official 5).
        batch_size: images inverted together; None: 1 on CPU (measured faster there: 12.4 s vs 16.4 s per image at
            1024 on 2 cores), 4 on a GPU.
        edits: InterFaceGAN edits (`parse_edits`).
        transfers: generator files for domain adaptation (path, or a name in `models`).
        transfer_latent: "restyle" (official recipe: ReStyle-e4e W+ codes) or "w" (the W-encoder codes).
        paste: paste faces back into the photos (with alignment).
        products: which outputs to write (subset of PRODUCTS); `run` writes all of them.
        pattern: file-name patterns for folder inputs, ";"-separated, case-insensitive ("*" = every file).
        max_pixels: larger pictures are skipped before decoding.
        force: process every file again, ignoring the manifest.
        read_latents: `*_latent.safetensors` inputs (with their `_deltas` beside them) are edited/transferred
            instead of images (the edit and transfer commands).
        device, dtype: as `load`.
    """
    models: str | os.PathLike = "models"
    hyperstyle: str | os.PathLike | None = None
    w_encoder: str | os.PathLike | None = None
    restyle: str | os.PathLike | None = None
    align: bool = True
    align_size: int = 1024
    iterations: int = 5
    batch_size: int | None = None
    edits: tuple[Edit, ...] = ()
    transfers: tuple[str, ...] = ()
    transfer_latent: str = "restyle"
    paste: bool = True
    products: frozenset[str] = frozenset(PRODUCTS)
    pattern: str = "*"
    max_pixels: int = DEFAULT_MAX_PIXELS
    force: bool = False
    read_latents: bool = False
    device: str | None = "auto"
    dtype: str | None = None

    def check(self) -> None:
        for name in ("iterations", "batch_size", "align_size", "max_pixels"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        unknown = set(self.products) - set(PRODUCTS)
        if unknown:
            raise ValueError(f"unknown products {sorted(unknown)}; choose from {', '.join(PRODUCTS)}")
        if self.transfer_latent not in ("restyle", "w"):
            raise ValueError(f"transfer_latent must be 'restyle' or 'w', got {self.transfer_latent!r}")
        labels = edit_labels(self.edits) if "edits" in self.products else []
        labels += [transfer_label(t) for t in self.transfers] if "transfers" in self.products else []
        for label in labels:
            if label in RESERVED_LABELS or label.endswith("_pasted") or not _LABEL.match(label):
                raise ValueError(f"{label!r} cannot name an edit or transfer output (it clashes with the names "
                                 f"{', '.join(sorted(RESERVED_LABELS))}); rename the direction or generator file")
        if len(set(labels)) != len(labels):
            raise ValueError(f"edits and transfers must have distinct names, got {', '.join(labels)}")

    @property
    def needs_models(self) -> bool:
        return bool(set(self.products) - {"aligned", "alignment"})


# --------------------------------------------------------------------------------------------- inputs and names


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


def output_names(out: str, options: RunOptions, latent_input: bool = False) -> list[str]:
    """Every file `run_folder` writes for an input named `out` under `options`."""
    p = options.products
    face_outputs = []     # images of the face that also get a pasted version
    names = []
    if not latent_input:
        if options.align and "aligned" in p:
            names.append(f"{out}_aligned.png")
        if options.align and "alignment" in p:
            names.append(f"{out}_alignment.json")
        if "inversion" in p:
            face_outputs.append(f"{out}_inversion")
    if "edits" in p:
        face_outputs += [f"{out}_{label}" for label in edit_labels(options.edits)]
    names += [f"{f}.png" for f in face_outputs]
    if options.align and options.paste and "pasted" in p and not latent_input:
        names += [f"{out}_pasted.png" if f == f"{out}_inversion" else f"{f}_pasted.png" for f in face_outputs]
    if "transfers" in p:
        names += [f"{out}_{transfer_label(t)}.png" for t in options.transfers]
    if not latent_input:
        if "latent" in p:
            names.append(f"{out}{LATENT_SUFFIX}")
        if "deltas" in p:
            names.append(f"{out}_deltas.safetensors")
    return names


def transfer_label(spec: str | os.PathLike) -> str:
    """File-name label of a transfer generator: its stem (toonify.safetensors -> toonify)."""
    name = Path(spec).name
    return name[:-len(".safetensors")] if name.endswith(".safetensors") else Path(name).stem or name


def _stem_of(item: InputFile) -> str:
    name = item.path.name
    return name[:-len(LATENT_SUFFIX)] if item.is_latent else Path(name).stem


def assign_output_stems(items: Sequence[InputFile], options: RunOptions,
                        previous: dict[str, str] | None = None) -> dict[str, str]:
    """Deterministic `<out>` name per input key, such that no two inputs write the same file.

    Unique stems are kept; clashing stems (a.jpg / a.png, case-insensitively) become `<stem>_<ext>`, then get a
    counter. Names in `previous` (key -> out from the manifest) are claimed first so re-runs keep their names.
    """
    previous = previous or {}
    claimed: set[str] = set()
    result: dict[str, str] = {}

    def fits(item: InputFile, out: str) -> bool:
        files = {n.lower() for n in output_names(out, options, item.is_latent)}
        return not files & claimed

    def claim(item: InputFile, out: str) -> None:
        claimed.update(n.lower() for n in output_names(out, options, item.is_latent))
        result[item.key] = out

    clashing = _clashing_stems([_stem_of(item) for item in items])
    for item in items:
        out = previous.get(item.key)
        if out and fits(item, out):
            claim(item, out)
    for item in items:
        if item.key not in result:
            ext = "latent" if item.is_latent else item.path.suffix
            claim(item, next(c for c in _name_candidates(_stem_of(item), ext, clashing) if fits(item, c)))
    return result


def _clashing_stems(stems: Sequence[str]) -> set[str]:
    """Lower-cased stems that more than one name has."""
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem.lower()] = counts.get(stem.lower(), 0) + 1
    return {stem for stem, n in counts.items() if n > 1}


def _name_candidates(stem: str, suffix: str, clashing: set[str]) -> Iterator[str]:
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
    clashing = _clashing_stems([p.stem for p in paths])
    taken: set[str] = set()
    out = []
    for p in paths:
        stem = next(c for c in _name_candidates(p.stem, p.suffix, clashing) if c.lower() not in taken)
        taken.add(stem.lower())
        out.append(stem)
    return out


# --------------------------------------------------------------------------------------------- manifest


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
def _output_lock(folder: Path) -> Iterator[None]:
    """Exclusive lock on the output folder (released by the OS even on kill -9); then remove stale temp files."""
    handle = open(folder / LOCK_NAME, "a")
    try:
        try:
            import fcntl
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:      # Windows: no advisory lock; one run per folder is the user's job
            pass
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


# --------------------------------------------------------------------------------------------- the run


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


@dataclass
class _Item:
    """One input on its way through a batch."""
    file: InputFile
    out: str
    stat: os.stat_result | None
    t_start: float
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    photo: np.ndarray | None = None       # the upright RGB photo [H, W, 3] uint8 (kept only for paste-back)
    aligned: object = None                # PIL crop (align) or the picture itself
    info: object = None                   # AlignmentInfo
    x: object = None                      # [1, 3, h, w] model input
    latent: object = None                 # latent inputs: [1, n, 512]
    restyle_latent: object = None
    deltas: object = None


class _Skip(Exception):
    def __init__(self, status: str, code: str, reason: str):
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


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
        processed); problems with single files never raise, they are recorded.
    """
    options = options or RunOptions()
    options.check()
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise ValueError(f"output {output} is a file; give a folder")
    items = collect_inputs(inputs, options.pattern, [output] if output.exists() else [], options.read_latents)
    output.mkdir(parents=True, exist_ok=True)
    with _output_lock(output):
        return _Runner(items, output, options, progress, on_record).run()


class _Runner:
    def __init__(self, items, output: Path, options: RunOptions, progress: bool, on_record):
        self.items, self.output, self.options = items, output, options
        self.progress, self.on_record = progress, on_record
        self.summary = RunSummary(total=len(items), manifest=str(output / MANIFEST_NAME))
        self.models = None
        self.run_id = _now()

    # ------------------------------------------------------------------ planning
    def _plan(self) -> list[tuple[InputFile, str, os.stat_result | None]]:
        """(input, output name, stat) of every file that needs work; counts the finished and skipped ones."""
        previous = {} if self.options.force else read_manifest(self.output / MANIFEST_NAME)
        outs = assign_output_stems(self.items, self.options,
                                   {k: r["out"] for k, r in previous.items() if isinstance(r.get("out"), str)})
        pending = []
        for item in self.items:
            try:
                st = item.path.stat()
            except OSError:
                st = None
            last = previous.get(item.key)
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
            from tqdm import tqdm
            bar = tqdm(total=len(pending), unit="img", desc="hyperstyle", dynamic_ncols=True)
        self._bar = bar
        self._manifest = manifest
        try:
            if pending and self.options.needs_models:
                self.models = _Models(self.options, need_invert=any(not f.is_latent for f, _, _ in pending))
            if self.options.align and any(not f.is_latent for f, _, _ in pending):
                from .alignment import detect_faces
                detect_faces(np.zeros((MIN_SIDE, MIN_SIDE, 3), np.uint8))   # dlib missing: one clear error now
            batch_size = self.options.batch_size or self._default_batch_size()
            t0 = time.perf_counter()
            batch: list[_Item] = []
            for file, out, st in pending:
                item = _Item(file, out, st, time.perf_counter())     # made here: only the batch's items live
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
        from .io_utils import atomic_path
        with atomic_path(self.output / SUMMARY_NAME) as tmp:
            tmp.write_text(json.dumps({"run": self.run_id, **self.summary.to_dict()}, indent=1) + "\n")
        return self.summary

    def _default_batch_size(self) -> int:
        model = self.models and (self.models.hs or next(iter(self.models.transfers.values()), None))
        if model is None:
            return 4
        return 1 if next(model.parameters()).device.type == "cpu" else 4

    # ------------------------------------------------------------------ recording
    def _record(self, item: _Item, status: str, code: str | None = None, reason: str | None = None,
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
        self._manifest.append(record)
        s = self.summary
        setattr(s, status, getattr(s, status) + 1)
        if code:
            s.codes[code] = s.codes.get(code, 0) + 1
        if status != "ok":
            log.debug("%s %s: %s", status, item.file.key, reason)
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(ok=s.ok, skipped=s.skipped, errors=s.error, refresh=False)
        if self.on_record is not None:
            self.on_record(record, s)
        # Free the photo and tensors now: a batch keeps its items until the last one is written.
        item.photo = item.aligned = item.x = item.latent = item.restyle_latent = item.deltas = None

    # ------------------------------------------------------------------ stage 1: read, check, align
    def _prepare(self, item: _Item) -> _Item | None:
        try:
            if item.file.is_latent:
                self._read_latent(item)
            else:
                self._read_image(item)
            return item
        except _Skip as s:
            self._record(item, s.status, s.code, s.reason)
        except Exception as e:  # noqa: BLE001 - one bad file must not stop the folder
            log.debug("preparing %s failed", item.file.key, exc_info=True)
            self._record(item, "error", "failed", f"{type(e).__name__}: {e}")
        return None

    def _read_image(self, item: _Item) -> None:
        from .images import ImageReadError, read_rgb

        path, opts = item.file.path, self.options
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise _Skip("skipped", "not_an_image_type",
                        f"{path.name} is not an image type ({path.suffix or 'no extension'}); "
                        f"handled: {' '.join(IMAGE_SUFFIXES)}")
        t = time.perf_counter()
        try:
            picture, notes = read_rgb(path, opts.max_pixels)
        except FileNotFoundError as e:
            raise _Skip("error", "missing", str(e)) from None
        except ImageReadError as e:
            raise _Skip("skipped" if e.code in SKIP_CODES else "error", e.code, str(e)) from None
        item.notes += notes
        w, h = picture.size
        if min(w, h) < MIN_SIDE:
            raise _Skip("skipped", "too_small", f"{path.name} is {w}x{h} pixels; faces need at least "
                                                f"{MIN_SIDE}x{MIN_SIDE}. Use a larger photo")
        item.timings["read"] = time.perf_counter() - t
        if opts.align:
            from PIL import Image

            from .alignment import align_image
            t = time.perf_counter()
            photo = np.asarray(picture, dtype=np.uint8)
            faces = align_image(photo, opts.align_size, "largest", "skip", path.name, transform_size=opts.align_size)
            item.timings["align"] = time.perf_counter() - t
            if not faces:
                raise _Skip("skipped", "no_face", f"No face found in {path.name}. Crop closer to the face, or pass "
                                                  f"--no-align if it is already an aligned crop")
            crop, item.info = faces[0]
            item.aligned = Image.fromarray(crop)
            if opts.paste and "pasted" in opts.products:
                item.photo = photo
        else:
            item.aligned = picture
        if self.models is not None and self.models.hs is not None:
            from .images import pil_to_input
            spec = self.models.hs.input_spec
            item.x = pil_to_input(item.aligned, spec.height, spec.width)

    def _read_latent(self, item: _Item) -> None:
        from .deltas import WeightDeltas
        from .latents import load_latent_file

        path = item.file.path
        try:
            tensors = load_latent_file(path)
        except (ValueError, FileNotFoundError) as e:
            raise _Skip("error", "bad_latent", str(e)) from None
        item.latent = tensors["latent"]
        if "restyle_latent" in tensors:
            item.restyle_latent = tensors["restyle_latent"]
        deltas_path = path.with_name(path.name[:-len(LATENT_SUFFIX)] + "_deltas.safetensors")
        if not deltas_path.exists():
            raise _Skip("error", "missing_deltas", f"{deltas_path.name} (the weight deltas of {path.name}) is missing; "
                                                   f"keep the _deltas file beside the _latent file")
        try:
            item.deltas = WeightDeltas.load(deltas_path)
        except (ValueError, FileNotFoundError) as e:
            raise _Skip("error", "bad_latent", str(e)) from None
        if item.deltas.batch_size != item.latent.shape[0]:
            raise _Skip("error", "bad_latent", f"{path.name} holds {item.latent.shape[0]} latents but its deltas "
                                               f"{item.deltas.batch_size}")
        if "transfers" in self.options.products and self.options.transfers and item.restyle_latent is None \
                and self.options.transfer_latent == "restyle":
            raise _Skip("error", "no_restyle_latent",
                        f"{path.name} has no ReStyle-e4e latent (it is written by `run --transfer`); pass "
                        f"--transfer-latent w to use its W-encoder latent instead")

    # ------------------------------------------------------------------ stage 2: models, then write
    def _process(self, batch: list[_Item]) -> None:
        try:
            rendered = self._render(batch)
        except Exception as e:  # noqa: BLE001
            if len(batch) > 1:      # find the one that fails; the others still get their outputs
                for item in batch:
                    self._process([item])
                return
            log.debug("processing %s failed", batch[0].file.key, exc_info=True)
            self._record(batch[0], "error", "failed", f"{type(e).__name__}: {e}")
            return
        for i, item in enumerate(batch):
            try:
                t = time.perf_counter()
                written = self._write(item, i, rendered)
                item.timings["write"] = time.perf_counter() - t
            except Exception as e:  # noqa: BLE001
                log.debug("writing %s failed", item.file.key, exc_info=True)
                self._record(item, "error", "write_failed", f"{type(e).__name__}: {e}")
                continue
            self._record(item, "ok", outputs=written)

    def _render(self, batch: list[_Item]) -> dict:
        """Model work for a batch -> {"final", "latent", "restyle_latent", "deltas", "edits", "transfers"} (CPU)."""
        import torch

        from .deltas import TOONIFY_LAYERS, WeightDeltas
        from .editing import apply_direction
        from .inversion import generate, invert, restyle_e4e_invert

        opts, models = self.options, self.models
        out: dict = {}
        if models is None:      # align only
            return out
        t = time.perf_counter()
        if batch[0].file.is_latent:
            latent = torch.cat([it.latent for it in batch])
            deltas = WeightDeltas.cat([it.deltas for it in batch])
            restyle = (torch.cat([it.restyle_latent for it in batch])
                       if all(it.restyle_latent is not None for it in batch) else None)
        else:
            x = torch.cat([it.x for it in batch])
            result = invert(x, models.hs, models.we, opts.iterations)
            latent, deltas = result.latent, result.deltas
            out["final"] = result.final.float().cpu()
            del result
            restyle = None
            if models.restyle is not None:
                restyle = restyle_e4e_invert(x, models.restyle, 2).latent
        out["latent"], out["deltas"] = latent.float().cpu(), deltas.to("cpu", None)
        out["restyle_latent"] = None if restyle is None else restyle.float().cpu()
        if "edits" in opts.products and opts.edits:
            out["edits"] = {label: generate(models.hs.generator, apply_direction(latent, models.directions[e.name],
                                                                                 e.factor), deltas).float().cpu()
                            for label, e in zip(edit_labels(opts.edits), opts.edits)}
        if "transfers" in opts.products and opts.transfers:
            codes = restyle if (opts.transfer_latent == "restyle" and restyle is not None) else latent
            kept = deltas.select(TOONIFY_LAYERS)
            out["transfers"] = {label: generate(gen, codes, kept).float().cpu()
                                for label, gen in models.transfers.items()}
        share = (time.perf_counter() - t) / len(batch)
        for item in batch:
            item.timings["model"] = share
        return out

    def _write(self, item: _Item, i: int, rendered: dict) -> list[str]:
        from .alignment import paste_back
        from .images import tensor_to_pil
        from .io_utils import atomic_path
        from .latents import save_latent

        opts, out, p = self.options, item.out, self.options.products
        written: list[str] = []

        def save_png(name: str, image) -> None:
            with atomic_path(self.output / name) as tmp:
                image.save(tmp, format="PNG")
            written.append(name)

        def save_face(base: str, face, pasted_name: str) -> None:
            save_png(f"{base}.png", tensor_to_pil(face))
            if item.photo is not None and item.info is not None:
                arr = ((face + 1) / 2).clamp(0, 1).permute(1, 2, 0).numpy()
                composite = paste_back(item.photo, arr, item.info)
                from PIL import Image
                save_png(pasted_name, Image.fromarray(np.rint(composite * 255).astype(np.uint8)))

        latent_input = item.file.is_latent
        if not latent_input and opts.align and "aligned" in p:
            save_png(f"{out}_aligned.png", item.aligned)
        if not latent_input and opts.align and "alignment" in p:
            with atomic_path(self.output / f"{out}_alignment.json") as tmp:
                tmp.write_text(json.dumps({"source_image": item.file.key, **item.info.to_dict()}) + "\n")
            written.append(f"{out}_alignment.json")
        if "inversion" in p and "final" in rendered:
            save_face(f"{out}_inversion", rendered["final"][i], f"{out}_pasted.png")
        for label, images in rendered.get("edits", {}).items():
            save_face(f"{out}_{label}", images[i], f"{out}_{label}_pasted.png")
        for label, images in rendered.get("transfers", {}).items():
            save_png(f"{out}_{label}.png", tensor_to_pil(images[i]))
        if not latent_input and "latent" in p:
            extra = {}
            if rendered.get("restyle_latent") is not None:
                extra["restyle_latent"] = rendered["restyle_latent"][i:i + 1]
            save_latent(self.output / f"{out}{LATENT_SUFFIX}", rendered["latent"][i:i + 1], extra,
                        {"source_image": item.file.key})
            written.append(f"{out}{LATENT_SUFFIX}")
        if not latent_input and "deltas" in p:
            rendered["deltas"].index(i).save(self.output / f"{out}_deltas.safetensors",
                                             {"source_image": item.file.key})
            written.append(f"{out}_deltas.safetensors")
        expected = output_names(out, opts, latent_input)
        missing = [n for n in expected if n not in written]
        if missing:     # would make the file look unfinished forever; cannot happen unless the code above is wrong
            raise RuntimeError(f"outputs {missing} were not written")
        return written


# --------------------------------------------------------------------------------------------- models


def resolve_model_file(spec: str | os.PathLike, models: Path, what: str) -> Path:
    """A model given as a path, a file name in `models`, or a bare name (-> models/name.safetensors)."""
    p = Path(spec)
    for candidate in (p, models / p, models / f"{p}.safetensors"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{what} {spec} was not found (looked for {p}, {models / p} and "
                            f"{models / (str(p) + '.safetensors')}). Download it with `hyperstyle download "
                            f"{transfer_label(p)}` or pass the path of a converted .safetensors file.")


def resolve_direction(name: str, models: Path) -> Path:
    """Direction `name` -> models/name.safetensors, else models/name.pt (the official file also loads)."""
    for candidate in (models / f"{name}.safetensors", models / f"{name}.pt"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"edit {name!r}: no {name}.safetensors or {name}.pt in {models}. Download it with "
                            f"`hyperstyle download {name}` (InterFaceGAN: age, smile, pose) or convert the "
                            f"direction file into that folder.")


class _Models:
    """Everything a run needs, loaded once; each file is checked against the HyperStyle model up front."""

    def __init__(self, options: RunOptions, need_invert: bool):
        from .checkpoints import load
        from .deltas import GeneratorSignature
        from .editing import apply_direction, load_direction

        models = Path(options.models)
        p = options.products
        self.hs = self.we = self.restyle = None
        self.directions, self.transfers = {}, {}
        wants_edits = "edits" in p and options.edits
        wants_transfers = "transfers" in p and options.transfers
        if need_invert or wants_edits:
            self.hs = load(Path(options.hyperstyle) if options.hyperstyle else models / "hyperstyle_ffhq.safetensors",
                           options.device, options.dtype, expect="hyperstyle")
        if need_invert:
            self.we = load(Path(options.w_encoder) if options.w_encoder else models / "faces_w_encoder.safetensors",
                           options.device, options.dtype, expect="w_encoder")
        if wants_edits:
            for e in options.edits:
                if e.name not in self.directions:
                    direction = load_direction(resolve_direction(e.name, models))
                    try:
                        apply_direction(self.hs.latent_avg[None].float().cpu(), direction, 1.0)
                    except ValueError as err:
                        raise ValueError(f"edit {e.name!r} does not fit the HyperStyle model: {err}. Use a "
                                         f"direction made for this model's latent space") from None
                    self.directions[e.name] = direction
        if wants_transfers:
            for spec in options.transfers:
                path = resolve_model_file(spec, models, "transfer generator")
                gen = load(path, options.device, options.dtype, expect="stylegan2")
                if self.hs is not None:
                    problem = GeneratorSignature.of(self.hs.generator).mismatch(GeneratorSignature.of(gen))
                    if problem:
                        raise ValueError(f"transfer generator {path.name} does not match the HyperStyle model's "
                                         f"generator ({problem}); use a fine-tuned generator of the same "
                                         f"architecture, e.g. toonify.safetensors for hyperstyle_ffhq")
                self.transfers[transfer_label(spec)] = gen
            if need_invert and options.transfer_latent == "restyle":
                path = Path(options.restyle) if options.restyle else models / "restyle_e4e_ffhq_encode.safetensors"
                if not path.is_file():
                    raise FileNotFoundError(
                        f"--transfer renders ReStyle-e4e latents as the official domain adaptation does, but "
                        f"{path} does not exist. Download it with `hyperstyle download restyle_e4e_ffhq_encode`, "
                        f"or pass --transfer-latent w to use the W-encoder latents instead.")
                self.restyle = load(path, options.device, options.dtype, expect="restyle_e4e")
