"""`hyperstyle download`: fetch official checkpoints by name, resume interrupted transfers, verify, convert.

    download("hyperstyle_ffhq", "models/")   # -> models/hyperstyle_ffhq.safetensors

Flow per checkpoint: skip if the converted file is already there (and matches the known sha256); otherwise fetch
into `models/<file>.part`, continuing an earlier partial transfer with an HTTP Range request (and re-trying a
dropped connection the same way); check size and sha256 where the registry (or --size/--sha256) knows them;
rename to `models/<file>`; convert it to `models/<stem>.safetensors` (whose metadata records the sha256 of what was
downloaded as `source_sha256`); delete the `.pt` unless asked to keep it. A failed check deletes the download and
leaves nothing in the models folder. Standard library only (urllib); the transfer itself is `io.http_fetch`.

Limits against a hostile or broken source: only http(s) addresses, redirects included; at most the known size (or
MAX_UNKNOWN_SIZE when unknown) is written; the whole transfer has a deadline; free space is checked before writing.
Only a dropped connection keeps its `.part` (to resume), and only when it holds bytes; every other failure deletes
it. A `.pt` that does not convert never stays in the models folder.

Two failures are told apart: a host that cannot be reached (no name resolution, connection refused, no connection
within CONNECT_TIMEOUT, or no answer to the request: nothing was received) raises HostUnreachable at once, without
retries, and `download_each` does not try that host again for the other files; a connection that dropped after data
came is resumed (`retries`), then raises DownloadInterrupted with the `.part` kept. Connecting has its own short
timeout (CONNECT_TIMEOUT), reading the longer READ_TIMEOUT (urllib alone has one timeout for both).

The official links (HyperStyle README) are Google Drive files: the `drive.usercontent.google.com` direct-download
form is used. Google Drive sometimes answers with a web page (quota exceeded, sign-in); that is recognised and
reported with the page to open in a browser. `mirror` / `$HYPERSTYLE_DOWNLOAD_BASE` replaces the official links by
`<base>/<official file name>` (an in-house mirror, or a local server in tests).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .checkpoints import read_info
from .convert import convert
from .files import sha256_file
from .http_fetch import (CONNECT_TIMEOUT, READ_TIMEOUT, DownloadError, DownloadInterrupted, HostSkipped,
                         HostUnreachable, TransferLimits, fetch, host_of, require_http)
from .registry import GROUPS, REGISTRY, Checkpoint, describe_registry, expand_names

__all__ = ["download", "download_each", "DownloadError", "DownloadInterrupted", "HostUnreachable", "HostSkipped",
           "REGISTRY", "GROUPS", "Checkpoint", "describe_registry", "expand_names"]

log = logging.getLogger(__name__)

MAX_UNKNOWN_SIZE = 8 << 30     # bytes accepted when the size is unknown: the largest official file is far below
DEADLINE = 6 * 3600.0          # seconds for one whole transfer (retries included): ~75 KB/s for a 1.6 GB checkpoint


def _resolve(name: str, url: str | None, sha256: str | None, size: int | None, mirror: str | None) -> Checkpoint:
    entry = REGISTRY.get(name)
    if entry is None:
        if url is None:
            raise ValueError(f"unknown checkpoint {name!r}. Known: {', '.join(REGISTRY)}; groups: "
                             f"{', '.join(GROUPS)}. For any other file pass --url (and --sha256).")
        filename = name if Path(name).suffix in (".pt", ".pth") else f"{name}.pt"
        if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$", filename):
            raise ValueError(f"{name!r} cannot be used as a file name; use letters, digits, '_', '-', '.'")
        entry = Checkpoint(Path(filename).stem, filename, (), url, "custom download")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise ValueError(f"--sha256 must be 64 hexadecimal digits, got {sha256!r}")
    if size is not None and size <= 0:
        raise ValueError(f"--size must be a positive number of bytes, got {size}")
    urls = (url,) if url else ((f"{mirror.rstrip('/')}/{entry.filename}",) if mirror else entry.urls)
    for address in urls:
        require_http(address, "download address")
    return dataclasses.replace(entry, urls=urls, size=size if size is not None else entry.size,
                               sha256=(sha256 or entry.sha256 or "").lower() or None)


def download(name: str, models: str | os.PathLike = "models", *, url: str | None = None, sha256: str | None = None,
             size: int | None = None, mirror: str | None = None, keep_source: bool = False, force: bool = False,
             retries: int = 3, retry_wait: float = 1.0, timeout: float = READ_TIMEOUT,
             connect_timeout: float = CONNECT_TIMEOUT, deadline: float | None = DEADLINE,
             max_size: int = MAX_UNKNOWN_SIZE, progress: bool = False,
             skip_hosts: Mapping[str, str] | None = None) -> Path:
    """Download checkpoint `name` (see REGISTRY) and convert it into `models`.

    Args:
        name: a REGISTRY name, or any name with `url`.
        models: the models folder (created).
        url: download from this URL instead of the registry / mirror (http or https only).
        sha256, size: what the file must be (override the registry).
        mirror: base URL replacing the official links: `<mirror>/<official file name>`.
        keep_source: keep the downloaded `.pt` beside the `.safetensors` (moved out of `models` if it fails to
            convert).
        force: download again even if the converted file exists.
        retries: how often a dropped connection is resumed before giving up (the partial file is kept). A host
            that never answered is not retried (HostUnreachable).
        retry_wait: seconds before the first retry (doubling, at most 10 s).
        timeout: seconds a connected server may stay silent (waiting for the answer, or between two reads).
        connect_timeout: seconds to open a connection (short: an unreachable host is reported quickly).
        deadline: seconds the whole transfer may take, retries included (None: no limit); past it the download
            stops and is deleted.
        max_size: the most bytes accepted when the size is not known (a known size is the limit otherwise).
        progress: show a tqdm bar.
        skip_hosts: {host[:port]: the file that found it unreachable}; a file that would have to come from these
            hosts only is not tried (HostSkipped). `download_each` fills it.
    Returns:
        Path of the converted `.safetensors` file.
    Raises:
        ValueError (DownloadError; HostUnreachable when nothing could be received) with what went wrong and what
        to do; FileNotFoundError never.
    """

    entry = _resolve(name, url, sha256, size, mirror)
    models = Path(models)
    models.mkdir(parents=True, exist_ok=True)
    target = models / f"{Path(entry.filename).stem}.safetensors"
    if not force and _already_converted(target, entry):
        return target
    source = models / entry.filename
    if force or not source.exists() or not _usable_source(source, entry):
        _refuse_skipped_host(entry, models, skip_hosts or {})
        seconds = math.inf if deadline is None else deadline
        limits = TransferLimits(retries, retry_wait, timeout, connect_timeout, seconds, time.monotonic() + seconds,
                                entry.size if entry.size is not None else max_size, progress)
        _download_source(entry, models, source, limits)
    return _convert_source(source, models, entry, keep_source)


def download_each(names: Iterable[str], models: str | os.PathLike = "models",
                  **options) -> Iterator[tuple[str, Path | Exception]]:
    """`download(name, models, **options)` for each name in turn, yielding (name, converted path or the error).

    Once a host could not be reached, the other files that would come from it are not tried (each would wait out
    the same timeouts): they yield HostSkipped. Files already converted are still found.
    """
    unreachable: dict[str, str] = {}      # host -> the name whose download found it unreachable
    for name in names:
        try:
            result: Path | Exception = download(name, models, skip_hosts=unreachable, **options)
        except HostUnreachable as e:
            for host in e.hosts:
                unreachable.setdefault(host, name)
            result = e
        except (ValueError, OSError) as e:      # a bad name or a failed download: the other names still go
            result = e
        yield name, result


def _refuse_skipped_host(entry: Checkpoint, models: Path, skip_hosts: Mapping[str, str]) -> None:
    hosts = tuple(dict.fromkeys(host_of(u) for u in entry.urls))
    if hosts and all(h in skip_hosts for h in hosts):
        raise HostSkipped(f"same host unreachable: {hosts[0]} could not be reached for {skip_hosts[hosts[0]]}, "
                          f"so {entry.filename} was not tried" + _manual_route(entry, models), hosts)



def _already_converted(target: Path, entry: Checkpoint) -> bool:
    if not target.exists():
        return False
    try:
        recorded = read_info(target)["metadata"].get("source_sha256")
    except ValueError:
        log.warning("%s exists but cannot be read; downloading it again", target)
        return False
    if recorded is not None and (entry.sha256 is None or recorded == entry.sha256):
        log.info("%s is already there (source sha256 %s)", target, recorded)
        return True
    return False


def _usable_source(source: Path, entry: Checkpoint) -> bool:
    """A .pt kept from an earlier download (--keep-pt) or put there by hand, if it passes the checks."""
    try:
        _verify(source, entry, delete=False)
    except DownloadError as e:
        log.warning("%s; downloading it again", e)
        return False
    return True


def _download_source(entry: Checkpoint, models: Path, source: Path, limits: TransferLimits) -> None:
    """Fetch into `<file>.part`, verify, rename to `source`. Only a dropped connection leaves the `.part` behind."""
    if not entry.urls:
        raise DownloadError(f"no download address for {entry.name}; pass --url")
    part = models / f"{entry.filename}.part"
    problems: list[DownloadError] = []
    for address in entry.urls:
        try:
            fetch(address, part, entry, limits)
            break
        except (DownloadInterrupted, HostUnreachable) as e:    # bytes from this or an earlier run stay, to resume
            _remove_if_empty(part)
            problems.append(e)
        except DownloadError as e:            # refused, over a limit or not the file: nothing worth resuming
            part.unlink(missing_ok=True)
            problems.append(e)
    else:
        raise _failure(problems, entry, models)
    digest = _verify(part, entry)
    os.replace(part, source)
    log.info("downloaded %s (%d bytes, sha256 %s)", source.name, source.stat().st_size, digest)


def _remove_if_empty(part: Path) -> None:
    """An empty `.part` holds nothing to resume: it goes (and no message may point at it)."""
    if part.exists() and part.stat().st_size == 0:
        part.unlink()


def _manual_route(entry: Checkpoint, models: Path) -> str:
    return (f". By hand: download {entry.filename} from {entry.page}, then run `hyperstyle convert {entry.filename} "
            f"--out {models}`" if entry.page else "")


def _failure(problems: list[DownloadError], entry: Checkpoint, models: Path) -> DownloadError:
    """One error for every address that failed, of the kind they share, with the routes that are left."""
    message = "; ".join(map(str, problems))
    if all(isinstance(p, HostUnreachable) for p in problems):
        hosts = tuple(dict.fromkeys(h for p in problems for h in p.hosts))
        return HostUnreachable(f"{message}. Check the internet connection (and proxy settings), or download from a "
                               f"mirror that serves the official file names: --mirror URL or "
                               f"$HYPERSTYLE_DOWNLOAD_BASE=URL" + _manual_route(entry, models), hosts)
    kind = DownloadInterrupted if all(isinstance(p, DownloadInterrupted) for p in problems) else DownloadError
    return kind(message + _manual_route(entry, models))


def _convert_source(source: Path, models: Path, entry: Checkpoint, keep_source: bool) -> Path:
    """Convert the downloaded `.pt`; if that fails the `.pt` leaves the models folder (deleted or moved aside)."""
    try:
        converted = convert(source, models)
    except Exception as e:  # noqa: BLE001 - whatever the converter trips on, the .pt must not stay in models/
        where = _remove_rejected(source, keep_source)
        reason = str(e) if isinstance(e, (ValueError, FileNotFoundError)) else f"{type(e).__name__}: {e}"
        raise DownloadError(f"{entry.filename} was downloaded but is not a checkpoint this package reads ({reason}); "
                            f"{where}. Check the source address") from None
    if not keep_source:
        source.unlink()
    return converted


def _remove_rejected(source: Path, keep_source: bool) -> str:
    """Delete a `.pt` that did not convert, or with keep_source move it outside the models folder (where the
    model pickers would list it); returns what happened, for the message."""
    if not keep_source:
        source.unlink(missing_ok=True)
        return "it was deleted"
    aside = Path(tempfile.mkdtemp(prefix="hyperstyle-rejected-")) / source.name
    shutil.move(source, aside)
    return f"it was moved out of the models folder to {aside}"


def _verify(path: Path, entry: Checkpoint, delete: bool = True) -> str:
    """Size and sha256 checks; a mismatch deletes the file (a resume would only extend bad bytes)."""
    got_size = path.stat().st_size
    problem = None
    if entry.size is not None and got_size != entry.size:
        problem = f"{entry.filename} has {got_size} bytes, expected {entry.size}"
    digest = sha256_file(path)
    if problem is None and entry.sha256 is not None and digest != entry.sha256:
        problem = f"{entry.filename} has sha256 {digest}, expected {entry.sha256}"
    if problem:
        if delete:
            path.unlink()
        raise DownloadError(f"{problem}: the download is corrupt or a different file"
                            f"{' and was deleted' if delete else ''}. Run the command again; if it fails the same way "
                            f"the source serves another file (check --mirror / --url, or --sha256)")
    return digest
