"""The real dashboard in Chromium, sent to Janus by the device, decodes through it.

Chromium runs inside the lab's viewer namespace with its default WebRTC
behaviour (mDNS host candidates, no loopback); the dashboard's files are
served by Playwright's request interception (no web server in the lab),
and it talks to the lab's Mosquitto over WebSockets and to Janus's
WebSocket API (dashboard/sfu.js), told where by ``welcome.relay`` and
``status.relay``.  Janus is then killed and restarted: the page picks up the
new feed by itself.
"""

from __future__ import annotations

import mimetypes
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.browser import CHROMIUM, CHROMIUM_ARGS
from tests.dashboard_env import dashboard_url, wait_js
from tests.janus_fixtures import (  # noqa: F401 - fixtures
    RelayDaemonFactory,
    janus_fixture,
    lab_fixture,
    needs_janus_lab,
    relay_daemon_fixture,
)
from tests.janus_lab import JanusServer
from tests.netlab import PUBLIC_IP, NetLab

pytestmark = [*needs_janus_lab, pytest.mark.browser]

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
ORIGIN = "http://peercam.lab"


def chromium_in(lab: NetLab) -> Path:
    wrapper = lab.workdir / "chromium-in-viewer-ns"
    wrapper.write_text(
        f'#!/bin/sh\nexec {" ".join(lab.viewer.exec_prefix())} {CHROMIUM} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return wrapper


async def serve_dashboard(route: Any) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?", 1)[0].split("#", 1)[0]
    target = (DASHBOARD / (path.lstrip("/") or "index.html")).resolve()
    if DASHBOARD not in target.parents or not target.is_file():
        await route.fulfill(status=404, body="not in the lab")
        return
    kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    await route.fulfill(body=target.read_bytes(), content_type=kind)


SESSION = "window.peercam.sessions.frontdoor"
USERS_CHROMIUM_ARGS = [
    a for a in CHROMIUM_ARGS if "loopback" not in a and "WebRtcHideLocalIpsWithMdns" not in a
]


async def test_the_dashboard_watches_through_janus_and_resubscribes_after_a_restart(
    lab: NetLab, janus: JanusServer, relay_daemon: RelayDaemonFactory
) -> None:
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    janus.start()
    daemon = await relay_daemon(policy="always", max_backoff=2)
    url = dashboard_url(f"{ORIGIN}/", f"ws://{PUBLIC_IP}:8083", "alice") + "#/device/frontdoor"
    async with async_playwright() as pw:
        # A user's Chromium: mDNS host candidates, no loopback (the suite's usual
        # flags turn both off for loopback tests; this one needs neither).
        browser = await pw.chromium.launch(
            executable_path=str(chromium_in(lab)), headless=True, args=USERS_CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            await page.route(f"{ORIGIN}/**", serve_dashboard)
            await page.goto(url)
            live = (
                f"() => {{ const s = {SESSION}; return s && s.state === 'live'"
                " && s.stats.framesDecoded >= 20 && s.stats.via; }"
            )
            try:
                via = await wait_js(page, live, 40, "20 frames through the SFU")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nconsole: {console}") from None
            assert via == "sfu"
            first = await page.evaluate(f"() => {SESSION}.timeline")
            overlay = await page.evaluate("() => document.getElementById('dv-stats').textContent")
            assert overlay.startswith("via SFU · "), overlay
            await page.screenshot(path=str(lab.workdir / "relay-dashboard.png"))
            status = await daemon.wait_status(lambda s: s["relay"]["feed"], 5)
            old_feed = status["relay"]["feed"]

            janus.kill()
            await daemon.wait_status(lambda s: s["relay"]["state"] == "fault", 10)
            janus.start()
            status = await daemon.wait_status(
                lambda s: s["relay"]["feed"] not in (None, old_feed), 30
            )
            new_feed = status["relay"]["feed"]
            again = (
                f"() => {{ const s = {SESSION}; return s && s.stats.feed === {new_feed}"
                " && s.state === 'live' && s.stats.framesDecoded >= 20; }"
            )
            try:
                await wait_js(page, again, 40, "20 frames from the new feed")
            except AssertionError as exc:
                raise AssertionError(f"{exc}\nconsole: {console}") from None
        finally:
            await browser.close()
    print(
        f"\n[relay] Chromium through Janus: session start → subscribe {first['subscribe']} ms, "
        f"→ Janus started {first['answer']} ms, → first frame {first['firstFrame']} ms; "
        f"feed {old_feed} → {new_feed} after a Janus restart, resubscribed by itself",
        file=sys.stderr,
    )
