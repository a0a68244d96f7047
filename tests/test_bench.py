"""The benchmark tools measure what they say: baseline server, no-decode viewers, JS reader."""

from __future__ import annotations

import numpy as np
import pytest

from bench.g2g import LatencyMeter
from bench.harness import serve
from bench.nodecode import ReceivedFrame, no_decoding
from peercam.sources import timecode
from tests.viewer import Viewer


@pytest.mark.parametrize("kind", ["baseline-x264-same", "baseline-aiortc"])
async def test_baseline_server_serves_the_stamped_pattern_over_the_protocol(kind: str) -> None:
    """The Python viewer watches the baseline; every picture carries a readable capture time."""
    meter = LatencyMeter()
    async with serve(kind, size=(640, 480), pattern="bars") as srv:
        viewer = Viewer(srv.broker_url, device=srv.device, viewer_id="bench-test")
        viewer.frame_hook = meter
        async with viewer:
            watch = await viewer.watch()
            await watch.wait_frames(15, timeout=30)
            assert watch.frame_sizes.keys() == {(640, 480)}
            assert watch.keyframes[0] == 0  # a per-viewer encoder starts with an IDR
    samples = [x for v in meter.samples.values() for x in v]
    assert len(samples) >= 15
    assert all(x > 0 for x in samples)  # captured before it was decoded


async def test_no_decoding_viewers_still_count_every_access_unit() -> None:
    async with serve("peercam", size=(320, 240), pattern="bars") as srv:
        with no_decoding():
            async with Viewer(srv.broker_url, device=srv.device, viewer_id="nodecode") as v:
                seen: list[object] = []
                v.frame_hook = lambda session, frame: seen.append(frame)
                watch = await v.watch()
                await watch.wait_frames(10, timeout=30)
    assert seen and all(isinstance(f, ReceivedFrame) for f in seen)
    assert seen[0].key_frame  # type: ignore[attr-defined]
    assert watch.keyframes[0] == 0


def band_rgba(width: int, height: int, t_us: int, noise: int = 0) -> tuple[list[int], dict]:
    """The code row of a stamped luma plane as RGBA (what a canvas returns), and its layout."""
    y = np.full((height, width), 100, np.uint8)
    timecode.stamp(y, t_us)
    lay = timecode.layout(width, height)
    rows = y[lay.y0 : lay.y1].astype(np.int16)
    if noise:
        rows += np.random.default_rng(1).integers(-noise, noise + 1, rows.shape, dtype=np.int16)
    gray = np.clip((rows - 16) * (255 / 219), 0, 255).astype(np.uint8)  # float math
    rgba = np.stack([gray, gray, gray, np.full_like(gray, 255)], axis=-1)
    return rgba.reshape(-1).tolist(), {"cell": lay.cell, "x0": lay.x0, "y0": lay.y0}


@pytest.mark.browser
async def test_the_javascript_barcode_reader_agrees_with_timecode_stamp() -> None:
    from playwright.async_api import async_playwright

    from bench.chromium import WEB
    from tests.browser import launch_chromium

    async with async_playwright() as pw:
        browser = await launch_chromium(pw)
        try:
            page = await browser.new_page()
            await page.set_content("<html><body></body></html>")
            await page.add_script_tag(path=str(WEB / "viewer.js"))
            for width, height in [(1280, 720), (1920, 1080), (640, 480)]:
                for t_us in [0, 1_764_000_000_123_456, timecode.MODULUS - 1]:
                    rgba, lay = band_rgba(width, height, t_us, noise=30)
                    js_lay = await page.evaluate(f"bench.layout({width}, {height})")
                    assert js_lay == lay
                    value = await page.evaluate(
                        "([px, w, lay]) => bench.readBand(px, w, lay)", [rgba, width, lay]
                    )
                    assert value == t_us % timecode.MODULUS
                    now = 1_764_000_000_500_000
                    unwrapped = await page.evaluate(f"bench.unwrap({value}, {now})")
                    assert unwrapped == timecode.unwrap(value, now)
            rgba, lay = band_rgba(1280, 720, 123_456_789)
            flipped = list(rgba)
            cell, x0 = lay["cell"], lay["x0"]
            for row in range(cell):  # invert one data cell completely: the CRC must refuse it
                for x in range(x0 + 30 * cell, x0 + 31 * cell):
                    i = 4 * (row * 1280 + x)
                    flipped[i : i + 3] = [255 - v for v in flipped[i : i + 3]]
            assert (
                await page.evaluate(
                    "([px, w, lay]) => bench.readBand(px, w, lay)", [flipped, 1280, lay]
                )
                is None
            )
        finally:
            await browser.close()
