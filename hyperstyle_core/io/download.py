"""`hyperstyle download`: fetch official checkpoints by name, resume interrupted transfers, verify, convert.

    download("hyperstyle_ffhq", "models/")   # -> models/hyperstyle_ffhq.safetensors

Flow per checkpoint: skip if the converted file is already there (and matches the known sha256); otherwise fetch
into `models/<file>.part`, continuing an earlier partial transfer with an HTTP Range request (and re-trying a
dropped connection the same way); check size and sha256 where the registry (or --size/--sha256) knows them;
rename to `models/<file>`; convert it to `models/<stem>.safetensors` (whose metadata records the sha256 of what was
downloaded as `source_sha256`); delete the `.pt` unless asked to keep it. A failed check deletes the download and
leaves nothing in the models folder. Standard library only (urllib).

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

import http.client
import logging
import math
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from .checkpoints import read_info
from .convert import convert
from .files import sha256_file
from .registry import GROUPS, REGISTRY, Checkpoint, describe_registry, expand_names

__all__ = ["download", "download_each", "DownloadError", "DownloadInterrupted", "HostUnreachable", "HostSkipped",
           "REGISTRY", "GROUPS", "Checkpoint", "describe_registry", "expand_names"]

log = logging.getLogger(__name__)

USER_AGENT = "hyperstyle-download/1 (+python-urllib)"
CHUNK = 1 << 20
HTTP_SCHEMES = ("http", "https")
MAX_UNKNOWN_SIZE = 8 << 30     # bytes accepted when the size is unknown: the largest official file is far below
DEADLINE = 6 * 3600.0          # seconds for one whole transfer (retries included): ~75 KB/s for a 1.6 GB checkpoint
CONNECT_TIMEOUT = 15.0         # seconds to open a connection: an unreachable host is reported quickly
READ_TIMEOUT = 60.0            # seconds a connected server may stay silent (the answer, or between two reads)


class DownloadError(ValueError):
    """A download that could not be completed or verified; the message says what to do."""


class DownloadInterrupted(DownloadError):
    """The connection kept dropping after data came: the `.part` file is kept so that the same command resumes it."""


class HostUnreachable(DownloadError):
    """Nothing was received from the host (name not resolved, refused, no connection or no answer in time)."""

    def __init__(self, message: str, hosts: tuple[str, ...]):
        super().__init__(message)
        self.hosts = hosts      # host[:port] of each address tried


class HostSkipped(HostUnreachable):
    """Not tried: an earlier file of the same `download_each` call found its host unreachable."""


def _require_http(url: str, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise DownloadError(f"{what} {url!r} is refused: only http:// and https:// addresses are downloaded "
                            f"(this one is {scheme + '://' if scheme else 'not a full URL'})")


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
        _require_http(address, "download address")
    return Checkpoint(entry.name, entry.filename, urls, entry.page, entry.description,
                      size if size is not None else entry.size, (sha256 or entry.sha256 or "").lower() or None)


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
        limits = _Limits(retries, retry_wait, timeout, connect_timeout, math.inf if deadline is None else deadline,
                         time.monotonic() + (math.inf if deadline is None else deadline),
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


def _host(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


def _refuse_skipped_host(entry: Checkpoint, models: Path, skip_hosts: Mapping[str, str]) -> None:
    hosts = tuple(dict.fromkeys(_host(u) for u in entry.urls))
    if hosts and all(h in skip_hosts for h in hosts):
        raise HostSkipped(f"same host unreachable: {hosts[0]} could not be reached for {skip_hosts[hosts[0]]}, "
                          f"so {entry.filename} was not tried" + _manual_route(entry, models), hosts)


@dataclass(frozen=True)
class _Limits:
    """How one transfer may go."""
    retries: int          # resumes after a dropped connection
    retry_wait: float     # seconds before the first resume (doubling, at most 10 s)
    timeout: float        # seconds a connected server may stay silent
    connect_timeout: float  # seconds to open a connection
    deadline: float       # seconds for the whole transfer (math.inf: none)
    deadline_at: float    # the same as a time.monotonic() value
    max_bytes: int        # the known size, or the bound for an unknown one
    progress: bool

    def remaining(self) -> float:
        return self.deadline_at - time.monotonic()


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


def _download_source(entry: Checkpoint, models: Path, source: Path, limits: _Limits) -> None:
    """Fetch into `<file>.part`, verify, rename to `source`. Only a dropped connection leaves the `.part` behind."""
    if not entry.urls:
        raise DownloadError(f"no download address for {entry.name}; pass --url")
    part = models / f"{entry.filename}.part"
    problems: list[DownloadError] = []
    for address in entry.urls:
        try:
            _fetch(address, part, entry, limits)
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


def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+)", value or "")
    return int(m.group(3)) if m else None


def _size_text(n: int) -> str:
    return f"{n} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def _check_free_space(folder: Path, total: int, have: int, entry: Checkpoint) -> None:
    """Refuse before writing when the rest of the download plus its converted copy cannot fit."""
    need = (total - have) + total
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DownloadError(f"{entry.filename} needs about {_size_text(need)} of free space in {folder} (the download "
                            f"and its converted copy) but there are only {_size_text(free)}; make room or choose "
                            f"another --models folder")


def _check_offer(url: str, entry: Checkpoint, total: int | None, have: int, folder: Path, limits: _Limits) -> None:
    """What the server says it will send, checked before anything is written."""
    if total is None:
        return
    if entry.size is not None and total != entry.size:
        raise DownloadError(f"{url} offers {total} bytes but {entry.filename} has {entry.size}: it is another file")
    if total > limits.max_bytes:
        raise DownloadError(f"{url} offers {total} bytes, more than the {limits.max_bytes} accepted for a file of "
                            f"unknown size; pass --size {total} if that really is the file")
    if entry.size is None:      # a known size was checked before the request
        _check_free_space(folder, total, have, entry)


def _deadline_error(url: str, limits: _Limits, part: Path) -> DownloadError:
    got = part.stat().st_size if part.exists() else 0
    return DownloadError(f"download of {url} did not finish within the deadline of {limits.deadline:g} s "
                         f"({got} bytes received); it was stopped and deleted. The source is too slow or stalls: "
                         f"try again later or use another source (--mirror / --url)")


class _ConnectFirst(http.client.HTTPConnection):
    """Opens the connection within `connect_timeout`, then reads with the request's (longer) timeout."""

    def __init__(self, *args, connect_timeout: float = CONNECT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)
        self.connect_timeout = connect_timeout

    def connect(self) -> None:
        read_timeout = self.timeout
        self.timeout = self.connect_timeout     # HTTPConnection.connect opens the socket with self.timeout
        try:
            super().connect()
        except TimeoutError:
            raise TimeoutError(f"no connection within {self.connect_timeout:g} s") from None
        finally:
            self.timeout = read_timeout
        self.sock.settimeout(read_timeout)


class _HTTPSConnectFirst(http.client.HTTPSConnection, _ConnectFirst):
    """HTTPS: HTTPSConnection.connect calls _ConnectFirst.connect (the MRO), then wraps the socket in TLS."""

    def __init__(self, *args, connect_timeout: float = CONNECT_TIMEOUT, **kwargs):
        super().__init__(*args, **kwargs)      # HTTPSConnection takes no connect_timeout: set it after
        self.connect_timeout = connect_timeout


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, connect_timeout: float):
        super().__init__()
        self.connect_timeout = connect_timeout

    def http_open(self, req):
        return self.do_open(_ConnectFirst, req, connect_timeout=self.connect_timeout)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, connect_timeout: float):
        super().__init__()
        self.connect_timeout = connect_timeout

    def https_open(self, req):
        return self.do_open(_HTTPSConnectFirst, req, context=self._context, connect_timeout=self.connect_timeout)


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follows redirects to http(s) only (urllib alone follows one to ftp:// and reports file:// as an HTTP error)."""

    def http_error_302(self, req, fp, code, msg, headers):
        location = headers.get("location") or headers.get("uri")
        if location:
            try:
                _require_http(urllib.parse.urljoin(req.full_url, location), f"{req.full_url} redirected to")
            except DownloadError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def _fetch(url: str, part: Path, entry: Checkpoint, limits: _Limits) -> None:
    """Download `url` into `part`, continuing what is there with Range requests. HostUnreachable when the host never
    answers, DownloadInterrupted when the connection keeps dropping after data came, DownloadError for the rest."""
    failures = 0
    restarted = False
    answered = False        # once the host has answered, failing to connect again is a dropped connection
    while True:
        have = part.stat().st_size if part.exists() else 0
        if entry.size is not None and have == entry.size:
            return
        if have > limits.max_bytes:
            part.unlink()
            have = 0
        if limits.remaining() <= 0:
            raise _deadline_error(url, limits, part)
        if entry.size is not None:
            _check_free_space(part.parent, entry.size, have, entry)
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            response = _opener(limits).open(request, timeout=min(limits.timeout, limits.remaining()))
        except urllib.error.HTTPError as e:
            answered = True
            if e.code == 416 and have and not restarted:      # our partial file does not fit the server's: restart
                part.unlink()
                restarted = True
                continue
            if not (e.code in (408, 429) or e.code >= 500):
                raise DownloadError(f"{url} answered HTTP {e.code} {e.reason}"
                                    + (": the file is not there (check the name or --mirror)" if e.code == 404 else
                                       "")) from None
            error = f"HTTP {e.code} {e.reason}"
        except (OSError, http.client.HTTPException) as e:   # URLError is an OSError: DNS, refused, timeouts
            error = _no_answer_reason(e, limits)
            if not answered:      # nothing ever came from this host: retrying would only wait as long again
                raise _unreachable(url, error, part, have) from None
        else:
            answered = True
            try:
                _receive(response, url, part, entry, have, limits)
                return
            except (_ConnectionDropped, OSError, http.client.HTTPException) as e:
                error = str(getattr(e, "reason", None) or e) or type(e).__name__
        failures += 1
        have = part.stat().st_size if part.exists() else 0
        if failures > limits.retries:
            raise _interrupted(url, error, part, have)
        if limits.remaining() <= 0:
            raise _deadline_error(url, limits, part)
        log.warning("%s: %s; %s (attempt %d of %d)", entry.filename, error,
                    f"resuming from byte {have}" if have else "trying again", failures, limits.retries)
        time.sleep(max(0.0, min(limits.retry_wait * 2 ** (failures - 1), 10.0, limits.remaining())))


def _opener(limits: _Limits) -> urllib.request.OpenerDirector:
    connect_timeout = max(0.001, min(limits.connect_timeout, limits.remaining()))
    return urllib.request.build_opener(_HttpOnlyRedirects, _HTTPHandler(connect_timeout),
                                       _HTTPSHandler(connect_timeout))


def _receive(response, url: str, part: Path, entry: Checkpoint, have: int, limits: _Limits) -> None:
    """Check the answer's offer and write its body to `part`; _ConnectionDropped when it ends early."""
    with response:
        if have and response.status != 206:      # the server ignored Range: start again
            have = 0
        total = _content_range_total(response.headers.get("Content-Range"))
        if total is None:
            length = response.headers.get("Content-Length")
            total = have + int(length) if length and length.isdigit() else None
        _check_offer(url, entry, total, have, part.parent, limits)
        _write_body(response, part, have, total, entry, url, limits)
    got = part.stat().st_size if part.exists() else 0
    if total is not None and got < total:
        raise _ConnectionDropped(f"connection closed after {got} of {total} bytes")


def _no_answer_reason(e: Exception, limits: _Limits) -> str:
    """Why no answer came, in words (urllib wraps connection errors in URLError.reason)."""
    reason = getattr(e, "reason", None) or e
    if isinstance(reason, http.client.RemoteDisconnected):
        return "it closed the connection without answering"
    if isinstance(reason, TimeoutError) and not str(reason).startswith("no connection"):
        return f"connected, but no answer within {limits.timeout:g} s"
    return str(reason) or type(reason).__name__


def _unreachable(url: str, reason: str, part: Path, have: int) -> HostUnreachable:
    kept = (f"; the {have} bytes already in {part} are kept, and the same command resumes them once the host "
            f"answers" if have else "")
    return HostUnreachable(f"cannot reach {_host(url)} ({reason}): nothing was received from {url}{kept}",
                           (_host(url),))


def _interrupted(url: str, error: str, part: Path, have: int) -> DownloadError:
    """Retries exhausted: resumable only when something was saved."""
    if have:
        return DownloadInterrupted(f"download of {url} was interrupted ({error}) with {have} bytes saved in {part}; "
                                   f"run the same command again to resume it")
    return DownloadError(f"download of {url} was interrupted ({error}) before any of the file arrived; nothing was "
                         f"saved. Try again later or use another source (--mirror URL / --url)")


class _ConnectionDropped(Exception):
    pass


def _write_body(response, part: Path, have: int, total: int | None, entry: Checkpoint, url: str,
                limits: _Limits) -> None:
    """Append the body to `part`. read1 returns after each network read, so a trickle stops at the deadline (late
    by at most one socket timeout) and a body longer than allowed stops at the limit."""
    from tqdm import tqdm

    first = response.read1(CHUNK)
    if not first and total != have:      # closed before the body: nothing to write (no empty .part is created)
        raise _ConnectionDropped("connection closed before any of the body arrived")
    content_type = response.headers.get("Content-Type", "")
    if have == 0 and (content_type.startswith("text/html") or first.lstrip()[:15].lower().startswith(
            (b"<!doctype html", b"<html"))):
        raise DownloadError(f"{url} sent a web page instead of {entry.filename} (Google Drive does that when its "
                            f"download quota is exceeded or it asks for a confirmation). Open {entry.page or url} in "
                            f"a browser, download the file, then run `hyperstyle convert {entry.filename} --out "
                            f"models/`")
    written = have
    with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                        unit_divisor=1024, desc=entry.filename,
                                                        disable=not limits.progress) as bar:
        chunk = first
        while chunk:
            written += len(chunk)
            if written > limits.max_bytes:
                raise _too_large(url, entry, limits)
            _append(f, chunk, part)
            bar.update(len(chunk))
            if time.monotonic() > limits.deadline_at:
                raise _deadline_error(url, limits, part)
            try:
                chunk = response.read1(CHUNK)
            except http.client.IncompleteRead as e:
                _append(f, e.partial, part)
                raise _ConnectionDropped(f"connection closed early ({len(e.partial)} more bytes received)") from None


def _append(f, chunk: bytes, part: Path) -> None:
    try:
        f.write(chunk)
    except OSError as e:      # a full disk or a vanished folder: report it as a download failure (the .part goes)
        raise DownloadError(f"cannot write {part}: {e.strerror or e}; make room or choose another --models "
                            f"folder") from None


def _too_large(url: str, entry: Checkpoint, limits: _Limits) -> DownloadError:
    known = (f"the size of {entry.filename}" if entry.size is not None else
             "the limit for a file of unknown size (pass --size if the file really is that large)")
    return DownloadError(f"{url} sent more than {limits.max_bytes} bytes, {known}; the download was stopped and "
                         f"deleted")
