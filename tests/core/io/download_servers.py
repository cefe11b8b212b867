"""Local HTTP servers for the download tests: one that serves files (with Range, dropped connections, web pages,
endless or trickling bodies) and one that accepts connections and never answers. (Imported by the test files of
this folder, which pytest puts on sys.path.)"""
from __future__ import annotations

import http.server
import re
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class FileServer(http.server.ThreadingHTTPServer):
    """Serves `files` {url path: file}; supports Range; can drop a connection or answer with a web page."""
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, Path] = {}
        self.drop_after: dict[str, int] = {}      # url path -> bytes sent before the connection is cut (once)
        self.ignore_range: set[str] = set()
        self.html: set[str] = set()
        self.endless: set[str] = set()            # url paths whose body never ends (no Content-Length)
        self.trickle: dict[str, int] = {}         # url path -> body length, sent one byte every 50 ms
        self.redirects: dict[str, str] = {}       # url path -> Location of a 302 answer
        self.requests: list[tuple[str, str | None]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def log_message(self, *args):
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        if self.path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path in srv.endless:
            self._send_endless()
            return
        if self.path in srv.trickle:
            self._send_trickle(srv.trickle[self.path])
            return
        if self.path in srv.html:
            body = b"<!DOCTYPE html><html><body>Google Drive - Quota exceeded</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        path = srv.files.get(self.path)
        if path is None:
            self.send_error(404, "Not Found")
            return
        data = path.read_bytes()
        start = 0
        m = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if m and self.path not in srv.ignore_range:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        cut = srv.drop_after.pop(self.path, None)
        if cut is not None:      # a dropped connection: part of the body, then the socket closes
            self.wfile.write(data[start:start + cut])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(data[start:])

    def _send_endless(self):
        """Zeros until the client hangs up (stopping at 64 MB so that a client without a limit still ends)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        block = b"\0" * 65536
        try:
            for _ in range(1024):
                self.wfile.write(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    def _send_trickle(self, length: int):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            for _ in range(length):
                self.wfile.write(b"\0")
                self.wfile.flush()
                time.sleep(0.05)
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True


class SilentServer:
    """Accepts connections and never answers (a firewall or a hung server); counts the connections."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.connections: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        try:
            while True:
                self.connections.append(self.sock.accept()[0])      # kept open, never answered
        except OSError:      # closed by close()
            pass

    def close(self):
        self.sock.close()
        for c in self.connections:
            c.close()


@contextmanager
def running_file_server() -> Iterator[FileServer]:
    """A FileServer serving on its own thread for the block, shut down after it."""
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
