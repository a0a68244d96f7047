"""A tiny static-file HTTP/1.1 server on asyncio, for the demo's web page.

Why not ``http.server`` or aiohttp: the standard library's server is
threaded and blocking (it would need its own thread beside the daemon's
event loop), and aiohttp would be a new dependency for serving four files.
This serves GET and HEAD from one folder, plus a few generated files
(``/config.json``), one request per connection (``Connection: close``), and
nothing else.  It is meant for localhost: it has no TLS and no
authentication.

Safety rules, since a browser (or anything else) may send it anything:
paths are percent-decoded once and then split into segments; a ``..``
segment gets 403; hidden files (``.git``), NUL bytes, backslashes,
symlinks leading out of the root and files of types not in CONTENT_TYPES
(the dashboard folder is a Python package with ``__init__.py``) are
refused; a request head is bounded in size and time; every connection is
handled inside its own ``try`` so that a bad request can only end that
connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

log = logging.getLogger("peercam.webserver")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".ico": "image/x-icon",
    ".webp": "image/webp",
    ".json": "application/json",
    ".map": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/markdown; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}

#: Largest request head (request line + headers) accepted.
MAX_HEAD_BYTES = 16 * 1024
#: Seconds a client may take to send its request head.
HEAD_TIMEOUT_S = 10.0
#: A refused request's body up to this size is read and dropped before closing, so
#: the close does not turn into a TCP reset that loses our response.
MAX_DRAIN_BYTES = 1024 * 1024

_ALLOWED_METHODS = ("GET", "HEAD")


def content_type(name: str) -> str | None:
    """The Content-Type for a file name, by extension; None for types this server does not serve."""
    return CONTENT_TYPES.get(PurePosixPath(name).suffix.lower())


class _HttpError(Exception):
    def __init__(self, status: HTTPStatus, detail: str = "") -> None:
        super().__init__(detail or status.phrase)
        self.status = status
        self.detail = detail or status.phrase


class StaticServer:
    """Serves ``root`` (and ``extra_files``) over HTTP on ``host:port``.

    ``port`` 0 picks a free port; ``url`` gives the real one after ``start()``.
    ``extra_files`` maps URL paths (``"/config.json"``) to content that takes
    precedence over files on disk.
    """

    def __init__(
        self,
        root: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        extra_files: dict[str, bytes] | None = None,
        actions: dict[str, Callable[[], Awaitable[dict[str, object]]]] | None = None,
    ) -> None:
        self.root = Path(root)
        #: ``POST {path}`` runs the action and answers its result as JSON (e.g. the
        #: demo's ``/api/ring``).  Same-origin only: a page elsewhere cannot post here.
        self.actions = dict(actions or {})
        self.host = host
        self.port = port
        self.extra_files = {
            "/" + name.lstrip("/"): data for name, data in (extra_files or {}).items()
        }
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._root_resolved: Path | None = None

    @property
    def url(self) -> str:
        """``http://HOST:PORT/``; a wildcard bind is shown as the loopback address."""
        if self._server is None:
            raise RuntimeError("StaticServer is not started")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    async def start(self) -> None:
        """Bind and serve; raises OSError (e.g. errno EADDRINUSE) if the port is taken."""
        if self._server is not None:
            raise RuntimeError("StaticServer already started")
        if not self.root.is_dir():
            raise FileNotFoundError(f"web root {self.root} is not a directory")
        self._root_resolved = self.root.resolve()
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, limit=MAX_HEAD_BYTES
        )
        sockets = self._server.sockets
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        log.info("serving %s on %s", self.root, self.url)

    async def stop(self) -> None:
        """Stop listening and close open connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                await server.wait_closed()

    async def __aenter__(self) -> StaticServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- one connection -----------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = writer.get_extra_info("peername")
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away: nothing to answer
        except Exception:
            log.exception("request from %s failed", peer)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_S):
                    head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise _HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE) from None
            except TimeoutError:
                raise _HttpError(HTTPStatus.REQUEST_TIMEOUT) from None
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip():
                    return  # connected and closed without a request (port probes)
                raise _HttpError(HTTPStatus.BAD_REQUEST, "incomplete request") from None
            method, target, headers = _parse_head(head)
            if method == "POST" and urlsplit(target).path in self.actions:
                await _drain_body(reader, headers)
                await self._run_action(writer, urlsplit(target).path, headers)
                return
            if method not in _ALLOWED_METHODS:
                await _drain_body(reader, headers)
                raise _HttpError(HTTPStatus.METHOD_NOT_ALLOWED)
            name, body = self._lookup(target)
        except _HttpError as err:
            status = err.status
            extra = {"Allow": ", ".join(_ALLOWED_METHODS)} if status == 405 else {}
            text = f"{status.value} {err.detail}\n".encode()
            await _respond(
                writer,
                status,
                text,
                "text/plain; charset=utf-8",
                head_only=method == "HEAD",
                extra=extra,
            )
            if status >= 500 or status == 400:
                log.info("%s %s: %s", writer.get_extra_info("peername"), status.value, err.detail)
            return
        ctype = content_type(name) or "application/octet-stream"
        await _respond(writer, HTTPStatus.OK, body, ctype, head_only=method == "HEAD")
        log.debug("%s %s -> 200 (%d bytes)", method, target[:200], len(body))

    async def _run_action(
        self, writer: asyncio.StreamWriter, path: str, headers: dict[str, str]
    ) -> None:
        origin = headers.get("origin")
        host = headers.get("host", "")
        if origin is not None and urlsplit(origin).netloc != host:
            raise _HttpError(HTTPStatus.FORBIDDEN, "cross-origin request refused")
        result = await self.actions[path]()
        body = json.dumps(result).encode()
        await _respond(writer, HTTPStatus.OK, body, "application/json")
        log.info("POST %s -> %s", path, result)

    def _lookup(self, target: str) -> tuple[str, bytes]:
        """(file name, content) for a request target, or an _HttpError."""
        path = urlsplit(target).path or "/"
        if not path.startswith("/"):
            raise _HttpError(HTTPStatus.BAD_REQUEST, "bad request target")
        try:
            path = unquote(path, errors="strict")
        except UnicodeDecodeError:
            raise _HttpError(HTTPStatus.NOT_FOUND) from None
        if "\x00" in path or "\\" in path:
            raise _HttpError(HTTPStatus.BAD_REQUEST, "bad characters in path")
        segments = [s for s in path.split("/") if s]
        if any(s == ".." for s in segments):
            raise _HttpError(HTTPStatus.FORBIDDEN, "path traversal refused")
        if any(s.startswith(".") for s in segments):
            raise _HttpError(HTTPStatus.NOT_FOUND)
        key = "/" + "/".join(segments)
        if key in self.extra_files:
            return key, self.extra_files[key]
        assert self._root_resolved is not None
        candidate = self._root_resolved.joinpath(*segments)
        if candidate.is_dir():
            candidate = candidate / "index.html"
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise _HttpError(HTTPStatus.NOT_FOUND) from None
        if not resolved.is_relative_to(self._root_resolved):
            raise _HttpError(HTTPStatus.FORBIDDEN, "outside the web root")
        if not resolved.is_file() or content_type(resolved.name) is None:
            # Only web content: never __init__.py, __pycache__/*.pyc or other package files.
            raise _HttpError(HTTPStatus.NOT_FOUND)
        try:
            return resolved.name, resolved.read_bytes()
        except OSError:
            raise _HttpError(HTTPStatus.NOT_FOUND) from None


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _HttpError(HTTPStatus.BAD_REQUEST) from None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1]:
        raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not version.startswith("HTTP/1."):
        raise _HttpError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _HttpError(HTTPStatus.BAD_REQUEST, "malformed header")
        headers[name.lower()] = value.strip()
    return method.upper(), target, headers


async def _drain_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> None:
    """Read and drop a small request body, so closing does not reset the connection."""
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        return
    if 0 < length <= MAX_DRAIN_BYTES:
        with contextlib.suppress(TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            async with asyncio.timeout(2):
                await reader.readexactly(length)


async def _respond(
    writer: asyncio.StreamWriter,
    status: HTTPStatus,
    body: bytes,
    ctype: str,
    *,
    head_only: bool = False,
    extra: dict[str, str] | None = None,
) -> None:
    headers = {
        "Date": formatdate(usegmt=True),
        "Server": "peercam",
        "Content-Type": ctype,
        "Content-Length": str(len(body)),
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Connection": "close",
        **(extra or {}),
    }
    lines = [f"HTTP/1.1 {status.value} {status.phrase}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    if not head_only:
        writer.write(body)
    await writer.drain()
