"""The dashboard's quality picker and stats overlay, in Chromium against the real daemon.

Chromium decodes both streams on one video track: the main stream
(640x360) and, after the user picks Low, the substream (320x180) from its
IDR, and the main stream again after High; the stats overlay says which
stream plays.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    broker_fixture,
    chromium_fixture,
    dashboard_url,
    new_page,
    shot,
    site_fixture,
    start_device,
    wait_frames,
    wait_js,
)
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.browser

CAMERA = {
    "width": 640,
    "height": 360,
    "bitrate": 800_000,
    "substream_width": 320,
    "substream_height": 180,
    "substream_bitrate": 200_000,
    "keyframe_interval": 90,
}


async def video_size(page: Any, width: int, what: str) -> None:
    await wait_js(
        page,
        f"() => {{ const v = document.getElementById('dv-video'); return v.videoWidth === {width}"
        " && window.peercam.stats.fps > 0; }",
        20,
        what,
    )


async def test_the_picker_switches_streams_and_chromium_decodes_both(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path, camera=CAMERA)
    page, _ = await new_page(chromium)
    await page.goto(dashboard_url(site, broker, "alice") + "#/device/frontdoor")
    await wait_frames(page, "frontdoor", 30, 30)
    await video_size(page, 640, "the main stream at 640 px")
    await wait_js(
        page,
        "() => document.getElementById('dv-stats').textContent"
        ".includes('main stream (high) · auto')",
        15,
        "the overlay names the main stream",
    )
    assert await page.input_value("#dv-quality") == "auto"

    await page.select_option("#dv-quality", "low")
    await video_size(page, 320, "the substream at 320 px")
    await wait_js(
        page,
        "() => document.getElementById('dv-stats').textContent.includes("
        "'substream (low) · chosen: low')",
        15,
        "the overlay names the substream",
    )
    before = await page.evaluate("() => window.peercam.stats.framesDecoded")
    await wait_frames(page, "frontdoor", before + 30, 30)
    await page.screenshot(path=shot("dashboard-quality-low.png"))

    await page.select_option("#dv-quality", "high")
    await video_size(page, 640, "the main stream again")
    before = await page.evaluate("() => window.peercam.stats.framesDecoded")
    await wait_frames(page, "frontdoor", before + 30, 30)
