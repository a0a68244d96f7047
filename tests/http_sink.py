"""A local HTTP endpoint that records what a notification service would receive.

``HttpSink`` runs Python's ThreadingHTTPServer on 127.0.0.1 and stores every
request (method, path, query, headers, body).  ``hold()`` makes it keep each
request waiting without an answer until ``release()``: a service that hangs.
``dead_url()`` is a port nobody listens on: a service that is down.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass(slots=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    received: float  # time.monotonic() when the body was read


class HttpSink:
    def __init__(self, status: int = 200, check: Callable[[Request], int] | None = None) -> None:
        self.requests: list[Request] = []
        self.waiting = 0  # requests held open right now
        self.status = status
        self.check = check  # returns the status to answer (e.g. a push endpoint's checks)
        self._release = threading.Event()
        self._release.set()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                )
                with sink._lock:
                    sink.requests.append(request)
                    sink.waiting += 1
                try:
                    sink._release.wait(120)  # bounded even if a test forgets to release
                finally:
                    with sink._lock:
                        sink.waiting -= 1
                status = sink.check(request) if sink.check else sink.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_PUT = do_POST

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> HttpSink:
        self._thread.start()
        return self

    def url(self, scheme: str = "http", path: str = "/notify") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def hold(self) -> None:
        self._release.clear()

    def release(self) -> None:
        self._release.set()

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def dead_port() -> int:
    """A loopback port with nothing listening (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
