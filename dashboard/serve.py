"""``peercam dashboard``: serve the dashboard alone, e.g. on the broker's host.

The dashboard is static: this only serves its folder (with peercam's small
static server) and, when ``--broker-url`` is given, a generated
``config.json`` that fills in the sign-in form.  Any other web server can
serve the same folder; users then type the broker URL or pass it as a URL
parameter (``?broker_url=wss://host:8084/mqtt``).

Browsers give the microphone (talkback) only to pages on https or
localhost, and an https page may only use ``wss://`` brokers; for use beyond
localhost put this behind a TLS reverse proxy, or host the folder on an
https web server.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import sys
from pathlib import Path

from peercam.webserver import StaticServer

log = logging.getLogger("peercam.dashboard")

DASHBOARD_DIR = Path(__file__).resolve().parent


def page_config(broker_url: str = "", topic_prefix: str = "peercam") -> dict[str, str]:
    """The generated config.json: prefills the sign-in form (the user still signs in)."""
    return {"broker_url": broker_url, "topic_prefix": topic_prefix}


def _fail(message: str) -> SystemExit:
    print(f"peercam dashboard: {message}", file=sys.stderr, flush=True)
    return SystemExit(2)


async def run_dashboard(
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    broker_url: str = "",
    topic_prefix: str = "peercam",
    stop: asyncio.Event | None = None,
) -> None:
    """Serve the dashboard until ``stop`` is set; a busy port is one sentence and exit code 2."""
    stop = stop if stop is not None else asyncio.Event()
    if broker_url and not broker_url.startswith(("ws://", "wss://")):
        raise _fail(
            f"--broker-url {broker_url!r} must be a WebSocket URL (ws://host:8083/mqtt or "
            "wss://host:8084/mqtt): browsers cannot speak MQTT over plain TCP"
        )
    extra = {}
    if broker_url or topic_prefix != "peercam":
        extra["/config.json"] = json.dumps(page_config(broker_url, topic_prefix), indent=2).encode()
    server = StaticServer(DASHBOARD_DIR, host=host, port=port, extra_files=extra)
    try:
        await server.start()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise _fail(
                f"port {port} on {host} is already in use; choose another one with --port"
            ) from None
        raise _fail(f"cannot serve on {host}:{port}: {exc.strerror}") from None
    try:
        print(f"peercam dashboard: open {server.url} in a browser (Ctrl+C to stop)", flush=True)
        if host not in ("127.0.0.1", "localhost", "::1"):
            log.warning(
                "serving over plain http on %s: browsers allow the microphone (talkback) only "
                "on https or localhost pages; put a TLS reverse proxy in front for that",
                host,
            )
        await stop.wait()
    finally:
        await server.stop()
