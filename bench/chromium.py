"""A Chromium viewer for the benchmarks: ``bench/web/viewer.js`` in headless Debian Chromium.

The page is served by Playwright itself (``page.route``) from ``bench/web``
plus the dashboard's vendored mqtt.js, so no web server runs; it talks to
Mosquitto's WebSockets listener on 127.0.0.1 and to the server over WebRTC
on loopback (``tests.browser`` flags).
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from tests.browser import launch_chromium

WEB = Path(__file__).parent / "web"
MQTT_JS = Path(__file__).parent.parent / "dashboard" / "vendor" / "mqtt.min.js"
FILES = {
    "/viewer.html": (WEB / "viewer.html", "text/html"),
    "/viewer.js": (WEB / "viewer.js", "application/javascript"),
    "/mqtt.min.js": (MQTT_JS, "application/javascript"),
}


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        found = FILES.get(self.path.split("?", 1)[0])
        if found is None:
            self.send_error(404)
            return
        body = found[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", found[1])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    """The bench page on a free 127.0.0.1 port (Chromium lets loopback pages reach loopback)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, name="bench-page", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class ChromiumViewer:
    """One page = one viewer id; ``watch()`` / ``bye()`` / ``take_latency()``."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []

    def on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    async def watch(self) -> dict[str, float]:
        """A fresh session up to its first displayed frame: helloMs, offerMs, gatherMs."""
        return await self.page.evaluate("bench.watch()")

    async def bye(self) -> None:
        await self.page.evaluate("bench.bye()")

    async def take_latency(self) -> dict[str, Any]:
        return await self.page.evaluate("bench.takeLatency()")


@contextlib.asynccontextmanager
async def chromium_viewers(
    ws_url: str, device: str, viewer_ids: list[str], *, trickle: bool = False
) -> AsyncIterator[list[ChromiumViewer]]:
    """One headless Chromium with a connected page per viewer id.

    ``trickle``: send the offer at once and the candidates after it, instead of
    waiting for ICE gathering to complete (what the dashboard does).
    """
    from playwright.async_api import async_playwright

    with page_server() as origin:
        async with async_playwright() as pw:
            browser = await launch_chromium(
                pw, extra_args=["--autoplay-policy=no-user-gesture-required"]
            )
            try:
                viewers = []
                for viewer_id in viewer_ids:
                    page = await browser.new_page()
                    viewer = ChromiumViewer(page)
                    page.on("console", viewer.on_console)
                    page.on("pageerror", lambda e, v=viewer: v.console_errors.append(str(e)))
                    await page.goto(
                        f"{origin}/viewer.html?broker={ws_url}&device={device}"
                        f"&viewer={viewer_id}&trickle={int(trickle)}"
                    )
                    await page.evaluate("bench.connect()")
                    viewers.append(viewer)
                yield viewers
            finally:
                await browser.close()
