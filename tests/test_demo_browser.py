"""`peercam demo` end to end in Chromium as a person runs it: Debian's Chromium decodes
the live H.264 with its default WebRTC behaviour (mDNS host names, no loopback pairing,
no media permission) and multicast dropped.

The machine is the viewer namespace of a ``LanLab`` (loopback plus a LAN address,
10.3.0.3, and a default route), so the demo can offer a non-loopback address without
touching the real machine's interfaces:

- ``this-machine``: ``peercam demo`` and Chromium both in that namespace, the printed
  ``http://127.0.0.1:…`` URL opened as printed (the README's demo);
- ``phone-on-lan``: ``peercam demo --host 0.0.0.0`` in the device namespace, Chromium
  on the other host of the LAN opening ``http://10.3.0.2:…``.
"""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lanlab import LAN_DEVICE_IP, LAN_VIEWER_IP, LanLab
from tests.mosquitto import free_port
from tests.netlab import remove_stale
from tests.netlab_fixtures import needs_lab

pytestmark = [needs_lab, pytest.mark.browser]

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
RINGING = "() => document.getElementById('ring-dialog').open"


async def read_url(proc: asyncio.subprocess.Process, timeout: float) -> str:
    """The demo prints the URL to open; wait for it (bounded)."""
    assert proc.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await proc.stdout.readline()).decode(errors="replace")
            if not line:
                raise AssertionError("demo exited before printing its URL:\n" + "".join(seen))
            seen.append(line)
            match = re.search(r"(http://127\.0\.0\.1:\d+/\S*)", line)
            if match:
                return match.group(1)


@pytest.fixture(name="lan")
def lan_fixture(tmp_path: Path) -> Iterator[LanLab]:
    remove_stale()
    lab = LanLab(tmp_path / "lan")
    try:
        lab.build()
        lab.block_multicast()
        yield lab
    finally:
        lab.close()


@pytest.mark.parametrize("where", ["this-machine", "phone-on-lan"])
async def test_demo_page_shows_live_video_in_a_default_chromium(lan: LanLab, where: str) -> None:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium, wait_for_frames
    from tests.dashboard_env import wait_js

    port = free_port()
    demo_ns, args = ("view", []) if where == "this-machine" else ("dev", ["--host", "0.0.0.0"])
    proc = await asyncio.create_subprocess_exec(
        *lan.ns(demo_ns).exec_prefix(),
        *[sys.executable, "-u", "-m", "peercam", "demo", "--port", str(port)],
        *["--width", "640", "--height", "480", *args],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=lan.env(),
    )
    output = ""
    try:
        url = await read_url(proc, 30)
        if where == "phone-on-lan":
            url = url.replace("127.0.0.1", LAN_DEVICE_IP)
        async with async_playwright() as pw:
            browser = await launch_chromium(
                pw, executable_path=str(lan.chromium_in("view")), default_webrtc=True
            )
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url)
            frames = await wait_for_frames(page, 30, 40)
            assert frames >= 30
            assert await page.evaluate("document.body.dataset.state") == "live"
            size = await page.evaluate(
                "(() => { const v = document.querySelector('video');"
                " return [v.videoWidth, v.videoHeight]; })()"
            )
            assert size == [640, 480]
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / f"demo-live-{where}.png"))
            # The demo's mock call button rings the page; answering works without a
            # microphone (none is granted in a browser as it comes).
            await page.click("#demo-ring")
            await wait_js(page, RINGING, 15, "the demo rings")
            await page.click("#ring-answer")
            await wait_js(
                page,
                "() => { const s = window.peercam.sessions.demo;"
                " return s.call !== null && s.state === 'live'; }",
                30,
                "the answered call shows video",
            )
            await browser.close()
            allowed = ("microphone",)
            assert not [e for e in errors if not any(a in e for a in allowed)], errors
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        output = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, output
    assert "Traceback" not in output, output
    assert "the call button rang" in output
    # The device learned the browser from its checks (its mDNS name cannot be
    # resolved): from the LAN on a phone; on the same machine Chromium's
    # wildcard-bound socket may reach 127.0.0.1 or the LAN address.
    learned = re.findall(r"connected in \d+ ms \(host (\S+) ⇄ prflx (\S+)\)", output)
    assert len(learned) == 2, output
    if where == "phone-on-lan":
        assert learned[0] == (LAN_DEVICE_IP, LAN_VIEWER_IP), learned
    assert "ICE/DTLS failed" not in output and "not connected after" not in output, output
    assert lan.multicast_drops() > 0
