"""Chromium under Playwright for tests: one place for the flags that keep it local and quiet.

Debian's Chromium (``/usr/bin/chromium``) decodes H.264, which Playwright's
own Chromium builds may not.  ``QUIET_ARGS`` only keep it from reaching
anything by itself (no QUIC, no component updates, no sync, no background
fetches): its WebRTC behaves as people's does (host candidates hidden
behind ``….local`` mDNS names, no pairing with a remote 127.0.0.1).
``launch_chromium(default_webrtc=True)`` gives exactly that, and
tests/test_default_browser.py watches the device with it inside network
namespaces, multicast dropped.

``LOOPBACK_WEBRTC_ARGS`` change WebRTC and are used only by the tests that
run on the host's loopback without namespaces (the default
``launch_chromium()``): there, 127.0.0.1 is the only address a test may
use, and a default Chromium never pairs with it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

CHROMIUM = "/usr/bin/chromium"

#: Keep Chromium quiet and runnable as root in a container; WebRTC untouched.
QUIET_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Tests on the host's loopback only: pair with 127.0.0.1 and show real host
#: addresses (a default Chromium does neither; see the module docstring).
LOOPBACK_WEBRTC_ARGS = [
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
CHROMIUM_ARGS = [*QUIET_ARGS, *LOOPBACK_WEBRTC_ARGS]


async def launch_chromium(
    playwright: Any,
    *,
    extra_args: list[str] | None = None,
    executable_path: str = CHROMIUM,
    default_webrtc: bool = False,
) -> Any:
    """Launch headless Debian Chromium; the caller closes it (``await browser.close()``).

    ``default_webrtc=True``: WebRTC as in a person's browser (mDNS host names,
    no loopback pairing); otherwise with ``LOOPBACK_WEBRTC_ARGS``.

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
        args=[*(QUIET_ARGS if default_webrtc else CHROMIUM_ARGS), *(extra_args or [])],
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
