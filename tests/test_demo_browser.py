"""`peercam demo` end to end in a real browser: Debian's Chromium decodes the live H.264."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.mosquitto import free_port

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"


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


async def test_demo_page_shows_live_video_in_chromium() -> None:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium, wait_for_frames

    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-u",
        "-m",
        "peercam",
        "demo",
        "--port",
        str(port),
        "--width",
        "640",
        "--height",
        "480",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = await read_url(proc, 30)
        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            page = await browser.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url)
            frames = await wait_for_frames(page, 30, 30)
            assert frames >= 30
            assert await page.evaluate("document.body.dataset.state") == "live"
            size = await page.evaluate(
                "(() => { const v = document.querySelector('video');"
                " return [v.videoWidth, v.videoHeight]; })()"
            )
            assert size == [640, 480]
            # The demo's mock call button rings through the page's origin.
            rang = await page.evaluate("fetch('/api/ring', {method: 'POST'}).then((r) => r.json())")
            assert rang == {"ok": True}
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "demo-live.png"))
            await browser.close()
            assert not errors, f"console errors: {errors}"
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    assert proc.returncode == 0
    rest = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
    assert "Traceback" not in rest, rest
    assert "the call button rang" in rest
