"""`hyperstyle download` against a local HTTP server on 127.0.0.1 serving recipe-built and official files:
plain download + convert, resumed transfers (Range), corrupted files, 404, a web page instead of the file; and
hostile sources: endless and trickling bodies, redirects to other schemes, a full disk, files that do not convert."""
from __future__ import annotations

import collections
import hashlib
import re
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from conftest import SHARED

from hyperstyle_core import load, load_direction, read_info
from hyperstyle_core.cli import main
from hyperstyle_core.io import download as download_module
from hyperstyle_core.io.download import REGISTRY, DownloadError, download, expand_names
from download_servers import running_file_server

DIRECTIONS = SHARED / "data" / "official" / "editing" / "interfacegan"


@pytest.fixture()
def server():
    with running_file_server() as srv:
        yield srv


@pytest.fixture(scope="module")
def generator_pt(converted):
    """An official-format rosinality generator checkpoint built by the recipe (256 config, ~120 MB)."""
    return converted.pt("stylegan2_256", name="stylegan2-ffhq-config-f")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_and_convert_from_a_mirror(server, generator_pt, tmp_path, capsys):
    server.files["/stylegan2-ffhq-config-f.pt"] = generator_pt
    server.files["/age.pt"] = DIRECTIONS / "age.pt"
    models = tmp_path / "models"
    code = main(["download", "stylegan2-ffhq-config-f", "age", "--models", str(models), "--mirror", server.base,
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in models.iterdir()) == ["age.safetensors", "stylegan2-ffhq-config-f.safetensors"]
    info = read_info(models / "stylegan2-ffhq-config-f.safetensors")
    assert info["kind"] == "stylegan2" and info["config"]["generator"]["size"] == 256
    assert info["metadata"]["source_sha256"] == sha256(generator_pt)     # what was downloaded is recorded
    load(models / "stylegan2-ffhq-config-f.safetensors", device="cpu", expect="stylegan2")
    assert load_direction(models / "age.safetensors").vector.shape == (1, 512)
    assert [r for r, _ in server.requests] == ["/stylegan2-ffhq-config-f.pt", "/age.pt"]
    # Already there: nothing is fetched again.
    assert main(["download", "age", "--models", str(models), "--mirror", server.base, "--quiet"]) == 0
    assert len(server.requests) == 2


def test_dropped_connection_is_resumed_with_a_range_request(server, generator_pt, tmp_path):
    server.files["/stylegan2-ffhq-config-f.pt"] = generator_pt
    server.drop_after["/stylegan2-ffhq-config-f.pt"] = 30_000_000
    target = download("stylegan2-ffhq-config-f", tmp_path, mirror=server.base, retry_wait=0.01)
    assert server.requests == [("/stylegan2-ffhq-config-f.pt", None),
                               ("/stylegan2-ffhq-config-f.pt", "bytes=30000000-")]
    assert read_info(target)["metadata"]["source_sha256"] == sha256(generator_pt)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stylegan2-ffhq-config-f.safetensors"]


def test_interrupted_download_resumes_on_the_next_command(server, generator_pt, tmp_path, monkeypatch, capsys):
    server.files["/stylegan2-ffhq-config-f.pt"] = generator_pt
    server.drop_after["/stylegan2-ffhq-config-f.pt"] = 50_000_000
    monkeypatch.setenv("HYPERSTYLE_DOWNLOAD_BASE", server.base)     # the mirror from the environment
    args = ["download", "stylegan2-ffhq-config-f", "--models", str(tmp_path), "--retries", "0", "--quiet"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "was interrupted" in err and "run the same command again to resume it" in err
    part = tmp_path / "stylegan2-ffhq-config-f.pt.part"
    assert part.stat().st_size == 50_000_000 and not (tmp_path / "stylegan2-ffhq-config-f.safetensors").exists()
    assert main(args) == 0
    assert server.requests[-1] == ("/stylegan2-ffhq-config-f.pt", "bytes=50000000-")
    assert not part.exists() and not (tmp_path / "stylegan2-ffhq-config-f.pt").exists()
    target = tmp_path / "stylegan2-ffhq-config-f.safetensors"
    assert read_info(target)["metadata"]["source_sha256"] == sha256(generator_pt)


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.files["/smile.pt"] = DIRECTIONS / "smile.pt"
    server.drop_after["/smile.pt"] = 1000
    server.ignore_range.add("/smile.pt")
    target = download("smile", tmp_path, mirror=server.base, retry_wait=0.01)
    assert server.requests[1] == ("/smile.pt", "bytes=1000-")      # asked to resume, got the whole file again
    assert read_info(target)["metadata"]["source_sha256"] == REGISTRY["smile"].sha256


def test_corrupted_file_is_refused_and_nothing_is_left(server, tmp_path, capsys):
    tampered = tmp_path / "age.pt"
    data = bytearray((DIRECTIONS / "age.pt").read_bytes())
    data[-100] ^= 0x01      # same size, one bit flipped
    tampered.write_bytes(bytes(data))
    server.files["/age.pt"] = tampered
    models = tmp_path / "models"
    assert main(["download", "age", "--models", str(models), "--mirror", server.base, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"expected {REGISTRY['age'].sha256}" in err and "corrupt" in err and "was deleted" in err
    assert list(models.iterdir()) == []
    # --url/--sha256 for any file: a wrong hash is refused the same way.
    server.files["/files/x"] = DIRECTIONS / "smile.pt"
    assert main(["download", "my_direction", "--url", f"{server.base}/files/x", "--sha256", "0" * 64,
                 "--models", str(models), "--quiet"]) == 1
    assert "has sha256" in capsys.readouterr().err and list(models.iterdir()) == []
    assert main(["download", "my_direction", "--url", f"{server.base}/files/x", "--sha256", sha256(DIRECTIONS /
                 "smile.pt"), "--models", str(models), "--quiet"]) == 0
    assert [p.name for p in models.iterdir()] == ["my_direction.safetensors"]


def test_wrong_size_404_and_web_page_are_clear_errors(server, tmp_path):
    server.files["/age.pt"] = DIRECTIONS / "pose.pt"      # a different file under the expected name
    with pytest.raises(DownloadError, match=r"offers 37624 bytes but age\.pt has 2808: it is another file"):
        download("age", tmp_path, mirror=server.base)
    with pytest.raises(DownloadError, match=r"answered HTTP 404 .*the file is not there"):
        download("smile", tmp_path, mirror=server.base)
    server.html.add("/hyperstyle_ffhq.pt")
    page = r"https://drive\.google\.com/file/d/1C3dEIIH1y8w1-zQMCyx7rDF0ndswSXh4/view"
    with pytest.raises(DownloadError, match=r"sent a web page instead of hyperstyle_ffhq\.pt .*quota.*Open " + page):
        download("hyperstyle_ffhq", tmp_path, mirror=server.base)
    with pytest.raises(ValueError, match=r"unknown checkpoint 'nope'\. Known: hyperstyle_ffhq"):
        download("nope", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_downloaded_file_that_is_no_checkpoint_is_deleted(server, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 4096)
    server.files["/toonify.pt"] = junk
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"toonify\.pt was downloaded but is not a checkpoint.*it was deleted"):
        download("toonify", models, mirror=server.base)
    assert list(models.iterdir()) == []


def test_registry_and_groups(capsys):
    assert main(["download", "--list"]) == 0
    listing = capsys.readouterr().out
    for name in ("hyperstyle_ffhq", "faces_w_encoder", "restyle_e4e_ffhq_encode", "toonify", "age", "faces"):
        assert name in listing
    assert expand_names(["faces", "age", "toonify"]) == ["hyperstyle_ffhq", "faces_w_encoder", "age", "smile", "pose",
                                                         "toonify"]
    for name in ("age", "smile", "pose"):     # the official repository's files: size and hash are known
        entry = REGISTRY[name]
        assert entry.size == (DIRECTIONS / f"{name}.pt").stat().st_size
        assert entry.sha256 == sha256(DIRECTIONS / f"{name}.pt")
    assert all(e.urls[0].startswith("https://") for e in REGISTRY.values())
    assert main(["download", "--models", "x"]) == 2
    assert main(["download", "age", "smile", "--sha256", "0" * 64]) == 2


# ------------------------------------------------------------------------------------------------ hostile sources

def test_endless_body_stops_at_the_size_limit_and_leaves_nothing(server, tmp_path):
    server.endless.update({"/age.pt", "/files/endless"})
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"sent more than 2808 bytes, the size of age\.pt; the download was "
                                            r"stopped and deleted"):
        download("age", models, mirror=server.base)      # the registry knows the size: that is the limit
    with pytest.raises(DownloadError, match=r"sent more than 1000000 bytes, the limit for a file of unknown size "
                                            r"\(pass --size"):
        download("endless", models, url=f"{server.base}/files/endless", max_size=1_000_000)
    server.files["/files/big"] = DIRECTIONS / "smile.pt"
    with pytest.raises(DownloadError, match=r"offers 2808 bytes, more than the 1000 accepted for a file of unknown "
                                            r"size; pass --size 2808"):
        download("big", models, url=f"{server.base}/files/big", max_size=1000)     # refused before reading
    assert list(models.iterdir()) == []


def test_trickling_body_stops_at_the_deadline_and_leaves_nothing(server, tmp_path):
    server.trickle["/smile.pt"] = 2808      # 140 s at one byte per 50 ms
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"did not finish within the deadline of 0\.5 s \(\d+ bytes received\); "
                                            r"it was stopped and deleted") as stopped:
        download("smile", models, mirror=server.base, deadline=0.5)
    received = int(re.search(r"\((\d+) bytes received\)", str(stopped.value))[1])
    assert received < 2808      # stopped early, not after the whole 140 s body
    assert list(models.iterdir()) == []


def test_addresses_and_redirects_other_than_http_are_refused(server, tmp_path):
    models = tmp_path / "models"
    server.redirects["/age.pt"] = "file:///etc/passwd"
    with pytest.raises(DownloadError, match=r"/age\.pt redirected to 'file:///etc/passwd' is refused: only http:// "
                                            r"and https:// addresses are downloaded"):
        download("age", models, mirror=server.base)
    server.redirects["/smile.pt"] = "ftp://127.0.0.1:9/smile.pt"     # urllib alone would follow this one
    with pytest.raises(DownloadError, match=r"redirected to 'ftp://127\.0\.0\.1:9/smile\.pt' is refused"):
        download("smile", models, mirror=server.base, retries=0)
    for address in ("file:///etc/passwd", "ftp://127.0.0.1:9/x.pt", "data:,hello", "127.0.0.1/x.pt"):
        with pytest.raises(DownloadError, match=r"download address .* is refused: only http:// and https://"):
            download("x", models, url=address)
    with pytest.raises(DownloadError, match=r"download address 'file:///tmp/age\.pt' is refused"):
        download("age", models, mirror="file:///tmp")
    with pytest.raises(ValueError, match=r"--size must be a positive number of bytes, got 0"):
        download("x", models, url=f"{server.base}/x.pt", size=0)
    assert list(models.iterdir()) == []
    server.redirects["/pose.pt"] = "/files/pose"        # an http redirect is still followed
    server.files["/files/pose"] = DIRECTIONS / "pose.pt"
    target = download("pose", models, mirror=server.base)
    assert [r for r, _ in server.requests][-2:] == ["/pose.pt", "/files/pose"] and target.exists()


DiskUsage = collections.namedtuple("DiskUsage", "total used free")


def test_not_enough_free_space_is_refused_before_writing(server, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: DiskUsage(10**9, 10**9 - 1000, 1000))
    server.files["/age.pt"] = DIRECTIONS / "age.pt"
    server.files["/files/x"] = DIRECTIONS / "smile.pt"
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"age\.pt needs about 5616 bytes of free space in .*models \(the "
                                            r"download and its converted copy\) but there are only 1000 bytes"):
        download("age", models, mirror=server.base)
    assert server.requests == []        # the registry knows the size: refused before asking
    with pytest.raises(DownloadError, match=r"x\.pt needs about 5616 bytes of free space"):
        download("x", models, url=f"{server.base}/files/x")      # the size from Content-Length
    assert list(models.iterdir()) == []


def test_checkpoint_that_fails_conversion_never_stays_in_models(server, tmp_path, monkeypatch):
    bad = tmp_path / "bad.pt"      # reads fine, but its generator lacks style.1 (the converter trips on it)
    torch.save({"g_ema": {"to_rgbs.0.bias": torch.zeros(1, 3, 1, 1), "style.2.weight": torch.zeros(4, 4)}}, bad)
    server.files["/toonify.pt"] = bad
    models = tmp_path / "models"
    with pytest.raises(DownloadError, match=r"toonify\.pt was downloaded but is not a checkpoint this package reads "
                                            r"\(.+\); it was deleted"):
        download("toonify", models, mirror=server.base)
    assert list(models.iterdir()) == []
    # --keep-pt: kept, but outside the models folder (where model pickers would list it); the message says where.
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    with pytest.raises(DownloadError, match=r"it was moved out of the models folder to .*toonify\.pt\. Check") as info:
        download("toonify", models, mirror=server.base, keep_source=True)
    aside = Path(re.search(r"moved out of the models folder to (.+?)\. Check", str(info.value)).group(1))
    assert aside.read_bytes() == bad.read_bytes() and models not in aside.parents
    assert list(models.iterdir()) == []
    # Whatever the converter raises ends the same way, with the error named.
    def crash(src, out):
        raise RuntimeError("unexpected layout")
    monkeypatch.setattr(download_module, "convert", crash)
    with pytest.raises(DownloadError, match=r"\(RuntimeError: unexpected layout\); it was deleted"):
        download("toonify", models, mirror=server.base)
    assert list(models.iterdir()) == []
