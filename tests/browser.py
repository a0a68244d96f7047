"""Chromium under Playwright for tests: one place for the flags that keep it local and quiet.

Debian's Chromium (``/usr/bin/chromium``) decodes H.264, which Playwright's
own Chromium builds may not; the flags keep it from reaching anything but
127.0.0.1 (no QUIC, no component updates, no sync, no background fetches)
and let WebRTC use loopback host candidates with real addresses instead of
mDNS names, which the daemon could not resolve.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

CHROMIUM = "/usr/bin/chromium"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


async def launch_chromium(
    playwright: Any, *, extra_args: list[str] | None = None, executable_path: str = CHROMIUM
) -> Any:
    """Launch headless Debian Chromium; the caller closes it (``await browser.close()``).

    ``playwright`` is what ``async_playwright()`` yields; returns a Playwright
    ``Browser``.  Usable directly in a fixture::

        async with async_playwright() as pw:
            browser = await launch_chromium(pw)
            try:
                yield browser
            finally:
                await browser.close()
    """
    return await playwright.chromium.launch(
        executable_path=executable_path,
        headless=True,
        args=[*CHROMIUM_ARGS, *(extra_args or [])],
    )


async def wait_for_frames(page: Any, n: int, timeout_s: float) -> int:
    """Poll ``window.peercam.stats.framesDecoded`` until it reaches ``n``; return the last value.

    Raises AssertionError (with the page's state and message) after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    frames = 0
    while True:
        frames = int(
            await page.evaluate("() => (window.peercam && window.peercam.stats.framesDecoded) || 0")
        )
        if frames >= n:
            return frames
        if time.monotonic() >= deadline:
            state = await page.evaluate(
                "() => [document.body.dataset.state,"
                " (document.getElementById('message') || {}).textContent || '']"
            )
            raise AssertionError(
                f"{frames} of {n} frames decoded after {timeout_s} s "
                f"(page state {state[0]!r}, message {state[1]!r})"
            )
        await asyncio.sleep(0.2)
