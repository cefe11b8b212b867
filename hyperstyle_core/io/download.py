"""`hyperstyle download`: fetch official checkpoints by name, resume interrupted transfers, verify, convert.

    download("hyperstyle_ffhq", "models/")   # -> models/hyperstyle_ffhq.safetensors

Flow per checkpoint: skip if the converted file is already there (and matches the known sha256); otherwise fetch
into `models/<file>.part`, continuing an earlier partial transfer with an HTTP Range request (and re-trying a
dropped connection the same way); check size and sha256 where the registry (or --size/--sha256) knows them;
rename to `models/<file>`; convert it to `models/<stem>.safetensors` (whose metadata records the sha256 of what was
downloaded as `source_sha256`); delete the `.pt` unless asked to keep it. A failed check deletes the download and
leaves nothing in the models folder. Standard library only (urllib).

The official links (HyperStyle README) are Google Drive files: the `drive.usercontent.google.com` direct-download
form is used. Google Drive sometimes answers with a web page (quota exceeded, sign-in); that is recognised and
reported with the page to open in a browser. `mirror` / `$HYPERSTYLE_DOWNLOAD_BASE` replaces the official links by
`<base>/<official file name>` (an in-house mirror, or a local server in tests).
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .checkpoints import read_info
from .convert import convert
from .files import sha256_file

log = logging.getLogger(__name__)

USER_AGENT = "hyperstyle-download/1 (+python-urllib)"
CHUNK = 1 << 20
_GITHUB_RAW = ("https://raw.githubusercontent.com/yuval-alaluf/hyperstyle/"
               "a723c7310312ca5b7f859340027f78e18965acbc/editing/interfacegan_directions/")


@dataclass(frozen=True)
class Checkpoint:
    """A downloadable file: official name, where to get it, and what it must look like (when known)."""
    name: str
    filename: str
    urls: tuple[str, ...]
    page: str                 # where a person can get it by hand
    description: str
    size: int | None = None   # bytes
    sha256: str | None = None


def _drive(name: str, file_id: str, description: str, filename: str | None = None) -> Checkpoint:
    return Checkpoint(name, filename or f"{name}.pt",
                      (f"https://drive.usercontent.google.com/download?id={file_id}&export=download&confirm=t",),
                      f"https://drive.google.com/file/d/{file_id}/view", description)


def _github(name: str, size: int, sha256: str, description: str) -> Checkpoint:
    url = f"{_GITHUB_RAW}{name}.pt"
    return Checkpoint(name, f"{name}.pt", (url,), url, description, size, sha256)


# Google Drive ids from the official HyperStyle README / notebooks/notebook_utils.py. Their sizes and hashes are
# not published, so only the files that live in the official repository itself carry size and sha256.
REGISTRY: dict[str, Checkpoint] = {c.name: c for c in [
    _drive("hyperstyle_ffhq", "1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4", "HyperStyle, human faces (FFHQ 1024)"),
    _drive("hyperstyle_cars", "1WZ7iNv5ENmxXFn6dzPeue1jQGNp6Nr9d", "HyperStyle, cars (Stanford Cars 512)"),
    _drive("hyperstyle_afhq_wild", "1OMAKYRp3T6wzGr0s3887rQK-5XHlJ2gp", "HyperStyle, wild animals (AFHQ Wild 512)"),
    _drive("faces_w_encoder", "1M-hsL3W_cJKs77xM1mwq2e9-J0_m7rHP", "W-encoder for faces (needed by hyperstyle_ffhq)"),
    _drive("cars_w_encoder", "1GZke8pfXMSZM9mfT-AbP1Csyddf5fas7", "W-encoder for cars"),
    _drive("afhq_wild_w_encoder", "1MhEHGgkTpnTanIwuHYv46i6MJeet2Nlr", "W-encoder for AFHQ Wild"),
    _drive("stylegan2-ffhq-config-f", "1EM87UquaoQmk17Q8d5kYIAHqu0dkYqdT", "StyleGAN2 FFHQ 1024 generator"),
    _drive("stylegan2-car-config-f", "1UmMHHB3DU1trTB8_9Fjkck5ZwArnD81B", "StyleGAN2 LSUN Car 512 generator"),
    _drive("afhqwild", "1z6IVVaCJuFTksKwp1CM3emWOVHbrBip-", "StyleGAN-ADA AFHQ Wild 512 generator"),
    _drive("restyle_e4e_ffhq_encode", "1e2oXVeBPXMQoUoC_4TNwAWpOPpSEhE_e",
           "ReStyle-e4e FFHQ encoder (domain adaptation latents)"),
    _drive("toonify", "1r3XVCt_WYUKFZFxhNH-xO2dTtF6B5szu", "Toonify generator (domain adaptation)"),
    _drive("pixar", "1trPW-To9L63x5gaXrbAIPkOU0q9f_h05", "StyleGAN-NADA Pixar generator (domain adaptation)"),
    _drive("sketch", "1aHhzmxT7eD90txAN93zCl8o9CUVbMFnD", "StyleGAN-NADA sketch generator (domain adaptation)"),
    _drive("disney_princess", "1rXHZu4Vd0l_KCiCxGbwL9Xtka7n3S2NB",
           "StyleGAN-NADA Disney princess generator (domain adaptation)"),
    _github("age", 2808, "50074516b1629707d89b5e43d6b8abd1792212fa3b961a87a11323d6a5222ae0",
            "InterFaceGAN age direction"),
    _github("smile", 2808, "817a7e732b59dee9eba862bec8bd7e8373568443bc9f9731a21cf9b0356f0653",
            "InterFaceGAN smile direction"),
    _github("pose", 37624, "736e0eacc8488fa0b020a2e7bd256b957284c364191dfea693705e5d06d43e7d",
            "InterFaceGAN pose direction (W+, 1024 models)"),
]}

GROUPS: dict[str, tuple[str, ...]] = {
    "faces": ("hyperstyle_ffhq", "faces_w_encoder", "age", "smile", "pose"),
    "domain": ("restyle_e4e_ffhq_encode", "toonify", "pixar", "sketch", "disney_princess"),
    "cars": ("hyperstyle_cars", "cars_w_encoder"),
    "wild": ("hyperstyle_afhq_wild", "afhq_wild_w_encoder"),
}


def describe_registry() -> str:
    """Human-readable list of the checkpoints and groups."""
    width = max(map(len, REGISTRY))
    lines = [f"{c.name:<{width}}  {c.description}" + (f" ({c.size} bytes, sha256 known)" if c.sha256 else "")
             for c in REGISTRY.values()]
    lines += ["", "groups:"] + [f"{g:<{width}}  {' '.join(names)}" for g, names in GROUPS.items()]
    return "\n".join(lines)


def expand_names(names: list[str]) -> list[str]:
    """Group names -> their members; order kept, duplicates dropped."""
    out: list[str] = []
    for name in names:
        for n in GROUPS.get(name, (name,)):
            if n not in out:
                out.append(n)
    return out


class DownloadError(ValueError):
    """A download that could not be completed or verified; the message says what to do."""


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
    urls = (url,) if url else ((f"{mirror.rstrip('/')}/{entry.filename}",) if mirror else entry.urls)
    return Checkpoint(entry.name, entry.filename, urls, entry.page, entry.description,
                      size if size is not None else entry.size, (sha256 or entry.sha256 or "").lower() or None)


def download(name: str, models: str | os.PathLike = "models", *, url: str | None = None, sha256: str | None = None,
             size: int | None = None, mirror: str | None = None, keep_source: bool = False, force: bool = False,
             retries: int = 3, retry_wait: float = 1.0, timeout: float = 60.0, progress: bool = False) -> Path:
    """Download checkpoint `name` (see REGISTRY) and convert it into `models`.

    Args:
        name: a REGISTRY name, or any name with `url`.
        models: the models folder (created).
        url: download from this URL instead of the registry / mirror.
        sha256, size: what the file must be (override the registry).
        mirror: base URL replacing the official links: `<mirror>/<official file name>`.
        keep_source: keep the downloaded `.pt` beside the `.safetensors`.
        force: download again even if the converted file exists.
        retries: how often a dropped connection is resumed before giving up (the partial file is kept).
        retry_wait: seconds before the first retry (doubling, at most 10 s).
        timeout: socket timeout in seconds.
        progress: show a tqdm bar.
    Returns:
        Path of the converted `.safetensors` file.
    Raises:
        ValueError (DownloadError) with what went wrong and what to do; FileNotFoundError never.
    """

    entry = _resolve(name, url, sha256, size, mirror)
    models = Path(models)
    models.mkdir(parents=True, exist_ok=True)
    target = models / f"{Path(entry.filename).stem}.safetensors"
    if target.exists() and not force:
        try:
            recorded = read_info(target)["metadata"].get("source_sha256")
        except ValueError:
            recorded = None
            log.warning("%s exists but cannot be read; downloading it again", target)
        if recorded is not None and (entry.sha256 is None or recorded == entry.sha256):
            log.info("%s is already there (source sha256 %s)", target, recorded)
            return target
    source = models / entry.filename
    part = models / f"{entry.filename}.part"
    have_source = source.exists() and not force
    if have_source:     # kept from an earlier download (--keep-pt) or put there by hand
        try:
            _verify(source, entry, delete=False)
        except DownloadError as e:
            log.warning("%s; downloading it again", e)
            have_source = False
    if not have_source:
        if not entry.urls:
            raise DownloadError(f"no download address for {entry.name}; pass --url")
        problems = []
        for address in entry.urls:
            try:
                _fetch(address, part, entry, retries, retry_wait, timeout, progress)
                break
            except DownloadError as e:
                problems.append(str(e))
        else:
            raise DownloadError("; ".join(problems) + (f". You can also download it by hand from {entry.page} and run "
                                                        f"`hyperstyle convert {entry.filename} --out {models}`"
                                                        if entry.page else ""))
        digest = _verify(part, entry)
        os.replace(part, source)
        log.info("downloaded %s (%d bytes, sha256 %s)", source.name, source.stat().st_size, digest)
    try:
        converted = convert(source, models)
    except (ValueError, FileNotFoundError) as e:
        if not keep_source:
            source.unlink()
        raise DownloadError(f"{entry.filename} was downloaded but is not a checkpoint this package reads ({e}); "
                            f"{'it was kept at ' + str(source) if keep_source else 'it was deleted'}. Check the "
                            f"source address") from None
    if not keep_source:
        source.unlink()
    return converted


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


def _fetch(url: str, part: Path, entry: Checkpoint, retries: int, retry_wait: float, timeout: float,
           progress: bool) -> None:
    """Download `url` into `part`, continuing what is there with Range requests; DownloadError when it cannot."""
    failures = 0
    restarted = False
    while True:
        have = part.stat().st_size if part.exists() else 0
        if entry.size is not None and have == entry.size:
            return
        if entry.size is not None and have > entry.size:
            part.unlink()
            have = 0
        headers = {"User-Agent": USER_AGENT}
        if have:
            headers["Range"] = f"bytes={have}-"
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                if have and response.status != 206:      # the server ignored Range: start again
                    have = 0
                total = _content_range_total(response.headers.get("Content-Range"))
                if total is None:
                    length = response.headers.get("Content-Length")
                    total = have + int(length) if length and length.isdigit() else None
                if entry.size is not None and total is not None and total != entry.size:
                    raise DownloadError(f"{url} offers {total} bytes but {entry.filename} has {entry.size}: it is "
                                        f"another file")
                _write_body(response, part, have, total, entry, url, progress)
            got = part.stat().st_size
            if total is not None and got < total:
                raise _Interrupted(f"connection closed after {got} of {total} bytes")
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have and not restarted:      # our partial file does not fit the server's: restart
                part.unlink()
                restarted = True
                continue
            if e.code in (408, 429) or e.code >= 500:
                error = f"HTTP {e.code} {e.reason}"
            else:
                raise DownloadError(f"{url} answered HTTP {e.code} {e.reason}"
                                    + (": the file is not there (check the name or --mirror)" if e.code == 404 else
                                       "")) from None
        except (_Interrupted, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            error = str(getattr(e, "reason", None) or e) or type(e).__name__
        failures += 1
        have = part.stat().st_size if part.exists() else 0
        if failures > retries:
            raise DownloadError(f"download of {url} was interrupted ({error}) with {have} bytes saved in {part}; "
                                f"run the same command again to resume it")
        log.warning("%s: %s; resuming from byte %d (attempt %d of %d)", entry.filename, error, have, failures,
                    retries)
        time.sleep(min(retry_wait * 2 ** (failures - 1), 10.0))


class _Interrupted(Exception):
    pass


def _write_body(response, part: Path, have: int, total: int | None, entry: Checkpoint, url: str,
                progress: bool) -> None:
    from tqdm import tqdm

    first = response.read(CHUNK)
    content_type = response.headers.get("Content-Type", "")
    if have == 0 and (content_type.startswith("text/html") or first.lstrip()[:15].lower().startswith(
            (b"<!doctype html", b"<html"))):
        raise DownloadError(f"{url} sent a web page instead of {entry.filename} (Google Drive does that when its "
                            f"download quota is exceeded or it asks for a confirmation). Open {entry.page or url} in "
                            f"a browser, download the file, then run `hyperstyle convert {entry.filename} --out "
                            f"models/`")
    with open(part, "ab" if have else "wb") as f, tqdm(total=total, initial=have, unit="B", unit_scale=True,
                                                        unit_divisor=1024, desc=entry.filename,
                                                        disable=not progress) as bar:
        chunk = first
        while chunk:
            f.write(chunk)
            bar.update(len(chunk))
            try:
                chunk = response.read(CHUNK)
            except http.client.IncompleteRead as e:
                f.write(e.partial)
                raise _Interrupted(f"connection closed early ({len(e.partial)} more bytes received)") from None
