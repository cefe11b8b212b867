"""One HTTP(S) transfer into a `.part` file, for `io.download`: Range resumes after a dropped connection, a short
connect timeout apart from the read timeout (urllib alone has one), redirects to http(s) only, and the limits of
a hostile or broken source (size offered and sent, free space, a deadline for the whole transfer).

    fetch("https://host/file.pt", Path("models/file.pt.part"), entry, limits)

Errors: HostUnreachable when nothing ever came from the host (not retried), DownloadInterrupted when the
connection kept dropping after data came (the `.part` stays, to resume), DownloadError for the rest.
"""
from __future__ import annotations

import http.client
import logging
import re
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .registry import Checkpoint

__all__ = ["fetch", "TransferLimits", "require_http", "host_of", "DownloadError", "DownloadInterrupted",
           "HostUnreachable", "HostSkipped", "CONNECT_TIMEOUT", "READ_TIMEOUT"]

log = logging.getLogger(__name__)

USER_AGENT = "hyperstyle-download/1 (+python-urllib)"
CHUNK = 1 << 20
HTTP_SCHEMES = ("http", "https")
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


def require_http(url: str, what: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in HTTP_SCHEMES:
        raise DownloadError(f"{what} {url!r} is refused: only http:// and https:// addresses are downloaded "
                            f"(this one is {scheme + '://' if scheme else 'not a full URL'})")



def host_of(url: str) -> str:
    return urllib.parse.urlsplit(url).netloc.lower()


@dataclass(frozen=True)
class TransferLimits:
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



def _content_range_total(value: str | None) -> int | None:
    m = re.match(r"bytes\s+(\d+)-(\d+)/(\d+)", value or "")
    return int(m.group(3)) if m else None


def size_text(n: int) -> str:
    return f"{n} bytes" if n < 1 << 20 else f"{n / (1 << 20):.1f} MiB"


def check_free_space(folder: Path, total: int, have: int, entry: Checkpoint) -> None:
    """Refuse before writing when the rest of the download plus its converted copy cannot fit."""
    need = (total - have) + total
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DownloadError(f"{entry.filename} needs about {size_text(need)} of free space in {folder} (the download "
                            f"and its converted copy) but there are only {size_text(free)}; make room or choose "
                            f"another --models folder")


def _check_offer(url: str, entry: Checkpoint, total: int | None, have: int, folder: Path,
                 limits: TransferLimits) -> None:
    """What the server says it will send, checked before anything is written."""
    if total is None:
        return
    if entry.size is not None and total != entry.size:
        raise DownloadError(f"{url} offers {total} bytes but {entry.filename} has {entry.size}: it is another file")
    if total > limits.max_bytes:
        raise DownloadError(f"{url} offers {total} bytes, more than the {limits.max_bytes} accepted for a file of "
                            f"unknown size; pass --size {total} if that really is the file")
    if entry.size is None:      # a known size was checked before the request
        check_free_space(folder, total, have, entry)


def _deadline_error(url: str, limits: TransferLimits, part: Path) -> DownloadError:
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
                require_http(urllib.parse.urljoin(req.full_url, location), f"{req.full_url} redirected to")
            except DownloadError:
                fp.close()
                raise
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302


def fetch(url: str, part: Path, entry: Checkpoint, limits: TransferLimits) -> None:
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
            check_free_space(part.parent, entry.size, have, entry)
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


def _opener(limits: TransferLimits) -> urllib.request.OpenerDirector:
    connect_timeout = max(0.001, min(limits.connect_timeout, limits.remaining()))
    return urllib.request.build_opener(_HttpOnlyRedirects, _HTTPHandler(connect_timeout),
                                       _HTTPSHandler(connect_timeout))


def _receive(response, url: str, part: Path, entry: Checkpoint, have: int, limits: TransferLimits) -> None:
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


def _no_answer_reason(e: Exception, limits: TransferLimits) -> str:
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
    return HostUnreachable(f"cannot reach {host_of(url)} ({reason}): nothing was received from {url}{kept}",
                           (host_of(url),))


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
                limits: TransferLimits) -> None:
    """Append the body to `part`. read1 returns after each network read, so a trickle stops at the deadline (late
    by at most one socket timeout) and a body longer than allowed stops at the limit."""
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


def _too_large(url: str, entry: Checkpoint, limits: TransferLimits) -> DownloadError:
    known = (f"the size of {entry.filename}" if entry.size is not None else
             "the limit for a file of unknown size (pass --size if the file really is that large)")
    return DownloadError(f"{url} sent more than {limits.max_bytes} bytes, {known}; the download was stopped and "
                         f"deleted")
