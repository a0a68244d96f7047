"""Real Chromium behind NAT B, forced to relay (``iceTransportPolicy: "relay"``) through coturn.

Chromium runs inside the lab's viewer namespace (its executable is a
wrapper around ``ip netns exec``), so it reaches only lab addresses.  The
page is tests/nat_page.html, served by Playwright's request interception
(no web server; mqtt.js from dashboard/vendor), and talks to the lab's
Mosquitto over WebSockets.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser import CHROMIUM, launch_chromium, wait_for_frames
from tests.netlab import ALL_URLS, PUBLIC_IP, Nat, NetLab, device_path
from tests.netlab_fixtures import (  # noqa: F401 - fixtures
    LabDaemonFactory,
    lab_daemon_fixture,
    lab_fixture,
    needs_lab,
)

pytestmark = [needs_lab, pytest.mark.browser]

ROOT = Path(__file__).resolve().parent.parent
PAGE = Path(__file__).with_name("nat_page.html")
MQTT_JS = ROOT / "dashboard" / "vendor" / "mqtt.min.js"
ORIGIN = "http://peercam.lab"


def chromium_in(lab: NetLab) -> Path:
    """An executable that starts Debian's Chromium inside the viewer namespace."""
    wrapper = lab.workdir / "chromium-in-viewer-ns"
    wrapper.write_text(
        f'#!/bin/sh\nexec {" ".join(lab.viewer.exec_prefix())} {CHROMIUM} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    return wrapper


async def serve(route: Any) -> None:
    path = route.request.url.removeprefix(ORIGIN).split("?", 1)[0]
    if path in ("/", "/index.html"):
        await route.fulfill(body=PAGE.read_text(encoding="utf-8"), content_type="text/html")
    elif path == "/mqtt.min.js":
        await route.fulfill(body=MQTT_JS.read_bytes(), content_type="text/javascript")
    else:
        await route.fulfill(status=404, body="not in the lab")


@pytest.mark.parametrize("network", ["symmetric", "udp-blocked"])
async def test_chromium_relay_only_decodes_through_coturn(
    lab: NetLab, lab_daemon: LabDaemonFactory, network: str
) -> None:
    from playwright.async_api import async_playwright

    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    if network == "symmetric":
        lab.set_nat("a", Nat.SYMMETRIC)
        lab.set_nat("b", Nat.SYMMETRIC)
    else:
        lab.set_nat("a", Nat.PORT_RESTRICTED, block_udp=True)
        lab.set_nat("b", Nat.PORT_RESTRICTED, block_udp=True)
    daemon = await lab_daemon(ice_servers=ALL_URLS)
    query = urlencode({"broker": f"ws://{PUBLIC_IP}:8083", "device": "frontdoor"})
    async with async_playwright() as pw:
        # As people run it: relay-only needs no WebRTC flags.
        browser = await launch_chromium(
            pw, executable_path=str(chromium_in(lab)), default_webrtc=True
        )
        try:
            page = await browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
            await page.route(f"{ORIGIN}/**", serve)
            await page.goto(f"{ORIGIN}/?{query}")
            try:
                frames = await wait_for_frames(page, 30, 40)
            except AssertionError as exc:
                state = await page.evaluate("() => window.peercam")
                raise AssertionError(f"{exc}\npage: {state}\nconsole: {console}") from None
            result = await page.evaluate("() => window.peercam")
        finally:
            await browser.close()
    pair = result["pair"]
    t = result["t"]
    ttff = t["firstFrame"] - t["hello"] if "firstFrame" in t else None
    print(
        f"\n[nat] Chromium relay-only, {network}: browser {pair['local']} "
        f"({pair['relayProtocol']}, {pair['url']}) ⇄ {pair['remote']}, "
        f"device {' ⇄ '.join(device_path(daemon))}, time to first frame "
        f"{'-' if ttff is None else f'{ttff:.0f} ms'}, frames {frames}; "
        f"candidate errors {result['errors']}",
        file=sys.stderr,
    )
    assert frames >= 30
    assert pair["local"] == "relay", pair
    if network == "udp-blocked":
        assert pair["relayProtocol"] in ("tcp", "tls"), pair
    assert "relay" in device_path(daemon)
