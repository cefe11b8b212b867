"""`hyperstyle download` when a host cannot be reached: refused connections, hosts that never answer, names that
do not resolve, connect timeouts, connections dropped before any data; what is kept and what the message says."""
from __future__ import annotations

import re
import socket

import pytest
from conftest import SHARED

from hyperstyle_core.cli import main
from hyperstyle_core.io import download as download_module
from hyperstyle_core.io.download import REGISTRY, download
from download_servers import SilentServer, running_file_server

DIRECTIONS = SHARED / "data" / "official" / "editing" / "interfacegan"


@pytest.fixture()
def server():
    with running_file_server() as srv:
        yield srv


@pytest.fixture()
def silent():
    srv = SilentServer()
    yield srv
    srv.close()


@pytest.fixture()
def refused() -> str:
    """The base URL of a local port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture()
def no_sleep(monkeypatch) -> list[float]:
    """Records the waits between retries instead of waiting."""
    waits: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", waits.append)
    return waits


def test_refused_connection_says_cannot_reach_with_mirror_and_manual_route(refused, tmp_path, no_sleep):
    models = tmp_path / "models"
    with pytest.raises(download_module.HostUnreachable) as info:
        download("age", models, mirror=refused)
    message = str(info.value)
    assert re.match(r"cannot reach 127\.0\.0\.1:\d+ \(.*Connection refused\): nothing was received from "
                    r"http://127\.0\.0\.1:\d+/age\.pt\. ", message), message
    assert "--mirror URL or $HYPERSTYLE_DOWNLOAD_BASE" in message
    assert (f"By hand: download age.pt from {REGISTRY['age'].page}, then run `hyperstyle convert age.pt --out "
            f"{models}`") in message
    assert "interrupted" not in message and "bytes saved" not in message and ".part" not in message
    assert no_sleep == []      # not retried: nothing ever came from that host
    assert list(models.iterdir()) == []


def test_offline_group_tries_each_host_once_and_keeps_what_is_there(refused, tmp_path, capsys, no_sleep):
    models = tmp_path / "models"
    models.mkdir()
    download_module.convert(DIRECTIONS / "age.pt", models)      # already converted earlier: still reported done
    assert main(["download", "faces", "--models", str(models), "--mirror", refused, "--quiet"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 4, captured.err
    assert lines[0].startswith("error: hyperstyle_ffhq: cannot reach 127.0.0.1:")
    for line, name in zip(lines[1:], ("faces_w_encoder", "smile", "pose")):
        assert line.startswith(f"skipped: {name}: same host unreachable: 127.0.0.1:"), line
        assert f"could not be reached for hyperstyle_ffhq, so {name}.pt was not tried. By hand: download " in line
    assert f"age -> {models / 'age.safetensors'}" in captured.out
    assert "resume" not in captured.err and ".part" not in captured.err
    assert sorted(p.name for p in models.iterdir()) == ["age.safetensors"]


def test_host_that_never_answers_is_waited_for_once_per_group(silent, tmp_path, no_sleep):
    models = tmp_path / "models"
    results = dict(download_module.download_each(["hyperstyle_ffhq", "faces_w_encoder", "toonify"], models,
                                                 mirror=silent.base, timeout=0.5, connect_timeout=5))
    first = results.pop("hyperstyle_ffhq")
    assert isinstance(first, download_module.HostUnreachable) and not isinstance(first, download_module.HostSkipped)
    assert re.match(r"cannot reach 127\.0\.0\.1:\d+ \(connected, but no answer within 0\.5 s\)", str(first))
    assert all(isinstance(r, download_module.HostSkipped) for r in results.values()), results
    assert len(silent.connections) == 1 and no_sleep == []     # one wait for the whole group, no retries
    assert list(models.iterdir()) == []


def test_name_that_does_not_resolve_says_cannot_reach(tmp_path, monkeypatch, no_sleep):
    def no_dns(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)      # offline: no name resolves
    with pytest.raises(download_module.HostUnreachable, match=r"cannot reach mirror\.invalid \(.*Name or service not "
                                                              r"known\): nothing was received.*--mirror URL"):
        download("age", tmp_path, mirror="http://mirror.invalid")
    assert list(tmp_path.iterdir()) == []


def test_connecting_has_its_own_short_timeout(server, tmp_path, monkeypatch, no_sleep):
    server.files["/age.pt"] = DIRECTIONS / "age.pt"
    opened: list[tuple[float, socket.socket]] = []
    real = socket.create_connection

    def recording(address, timeout, *args, **kwargs):
        sock = real(address, timeout, *args, **kwargs)
        opened.append((timeout, sock))
        return sock
    monkeypatch.setattr(socket, "create_connection", recording)
    download("age", tmp_path, mirror=server.base, timeout=30, connect_timeout=7)
    assert [t for t, _ in opened] == [7]                   # connecting: the connect timeout
    assert opened[0][1].gettimeout() == 30                 # then reading: the read timeout

    def never_connects(address, timeout, *args, **kwargs):
        raise TimeoutError("timed out")
    monkeypatch.setattr(socket, "create_connection", never_connects)
    with pytest.raises(download_module.HostUnreachable, match=r"cannot reach 127\.0\.0\.1:\d+ \(no connection within "
                                                              r"7 s\): nothing was received"):
        download("smile", tmp_path, mirror=server.base, connect_timeout=7)
    assert no_sleep == []


def test_connection_dropped_before_any_data_claims_nothing_saved(server, tmp_path, capsys, no_sleep):
    server.files["/smile.pt"] = DIRECTIONS / "smile.pt"
    server.drop_after["/smile.pt"] = 0          # headers, then the connection closes
    models = tmp_path / "models"
    assert main(["download", "smile", "--models", str(models), "--mirror", server.base, "--retries", "0",
                 "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "was interrupted (connection closed before any of the body arrived) before any of the file arrived; " \
           "nothing was saved" in err
    assert "bytes saved" not in err and "resume" not in err
    assert list(models.iterdir()) == []         # no empty .part


def test_unreachable_host_keeps_an_earlier_partial_download(server, refused, tmp_path, no_sleep):
    data = (DIRECTIONS / "pose.pt").read_bytes()
    part = tmp_path / "pose.pt.part"
    part.write_bytes(data[:1000])               # from an earlier, interrupted run
    with pytest.raises(download_module.HostUnreachable, match=r"the 1000 bytes already in .*pose\.pt\.part are kept, "
                                                              r"and the same command resumes them"):
        download("pose", tmp_path, mirror=refused)
    assert part.read_bytes() == data[:1000]
    server.files["/pose.pt"] = DIRECTIONS / "pose.pt"
    assert download("pose", tmp_path, mirror=server.base).exists()      # resumed once a host answers
    assert server.requests == [("/pose.pt", "bytes=1000-")]
