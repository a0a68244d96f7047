"""The dashboard in real Chromium against a real Mosquitto (passwords, ACL, WebSockets)
and the real daemon with the test pattern.

Each test looks at what a user sees (the page's DOM) and at what the page reports
(`window.peercam`, fed by RTCPeerConnection.getStats()), and fails on console errors.
Screenshots of the main states go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    DeviceSide,
    TcpRelay,
    broker_fixture,
    card,
    chromium_fixture,
    dashboard_url,
    image_loaded,
    js_card,
    new_page,
    png_size,
    shot,
    site_fixture,
    start_device,
    wait_frames,
    wait_js,
    wait_more_frames,
    watch_console,
    watching_page,
)
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.browser


# --- sign in ------------------------------------------------------------------------------


async def test_sign_in_with_the_form_and_see_the_device_live(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(chromium)
    await page.goto(site)
    # "loading" until config.json has been fetched (after the load event goto waits for)
    await wait_js(page, "() => document.body.dataset.view === 'signin'", 10, "sign-in view")
    await page.screenshot(path=shot("dashboard-signin.png"))

    await page.fill("#f-broker", broker.ws_url)
    await page.fill("#f-viewer", "alice")
    await page.fill("#f-password", "alice-pw")
    await page.check("#f-remember")
    await page.click("#signin-submit")

    await wait_js(page, "() => document.body.dataset.view === 'devices'", 15, "devices view")
    card = page.locator('.card[data-device="frontdoor"]')
    await card.wait_for()
    assert await card.get_attribute("data-online") == "true"
    await wait_frames(page, "frontdoor", 20, 30)
    await wait_js(
        page,
        "() => document.querySelector('.card[data-device=frontdoor]').dataset.state === 'live'",
        5,
    )
    assert "Front door" in await card.inner_text()
    await page.screenshot(path=shot("dashboard-devices.png"))

    # Remembered: a reload signs in by itself.
    await page.reload()
    await wait_js(
        page, "() => document.body.dataset.view === 'devices'", 15, "devices after reload"
    )
    assert await page.evaluate("window.peercam.viewer") == "alice"
    await wait_frames(page, "frontdoor", 5, 30)

    # Sign out: sessions end (bye), nothing stays in the browser's storage.
    await page.click("#signout")
    await wait_js(page, "() => document.body.dataset.view === 'signin'", 5)
    assert await page.inner_text("#signin-text") == "Signed out."
    assert await page.evaluate(
        "() => !localStorage.getItem('peercam.signin.v1')"
        " && !sessionStorage.getItem('peercam.signin.v1')"
    )
    assert await page.input_value("#f-password") == ""
    await daemon.wait_status(lambda s: s.get("viewers") == 0, 10)
    await page.reload()
    await wait_js(page, "() => document.body.dataset.view === 'signin'", 5, "form after reload")
    assert not log.unexpected(), log.errors


async def test_wrong_password_is_said_plainly(
    chromium: Any, site: str, broker: MosquittoBroker
) -> None:
    page, log = await new_page(chromium)
    await page.goto(site)
    await page.fill("#f-broker", broker.ws_url)
    await page.fill("#f-viewer", "alice")
    await page.fill("#f-password", "not-her-password")
    await page.click("#signin-submit")
    text = await wait_js(
        page,
        "() => { const m = document.getElementById('signin-text').textContent;"
        " return /wrong viewer id or password/i.test(m) && m; }",
        15,
        "wrong-password message",
    )
    assert "alice" in text
    assert await page.evaluate("document.body.dataset.view") == "signin"
    await page.screenshot(path=shot("dashboard-wrong-password.png"))
    assert not log.unexpected(), log.errors


# --- live view ------------------------------------------------------------------------------


async def test_large_view_stats_fullscreen_snapshot_and_keys(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(chromium, accept_downloads=True)
    await page.goto(dashboard_url(site, broker, "alice"))
    card_link = page.locator('.card[data-device="frontdoor"] .card-link')
    await card_link.wait_for()
    # Keyboard: the card is a link; Enter opens the large view.
    await card_link.focus()
    await page.keyboard.press("Enter")
    await wait_js(page, "() => document.body.dataset.view === 'device'", 10, "large view")
    assert page.url.endswith("#/device/frontdoor")
    await wait_frames(page, "frontdoor", 30, 30)
    stats = await wait_js(
        page,
        "() => { const s = window.peercam.stats; return s.rttMs !== null && s.latencyMs !== null"
        " && s.bitrateKbps > 0 && s.fps > 0 && s; }",
        15,
        "complete stats",
    )
    assert stats["path"] == "direct"
    assert stats["localCandidateType"] == "host" and stats["remoteCandidateType"] == "host"
    assert (stats["width"], stats["height"]) == (320, 240)
    overlay = await page.inner_text("#dv-stats")
    assert "direct · host ↔ host" in overlay and "320×240" in overlay and "RTT" in overlay
    assert "latency ≈" in overlay
    video_size = await page.evaluate(
        "() => { const v = document.getElementById('dv-video');"
        " return [v.videoWidth, v.videoHeight]; }"
    )
    assert video_size == [320, 240]
    await page.screenshot(path=shot("dashboard-live.png"))

    # Snapshot: a PNG of the current frame, at the stream's size.
    async with page.expect_download() as info:
        await page.click("#dv-snapshot")
    download = await info.value
    assert download.suggested_filename.startswith("peercam-frontdoor-")
    assert download.suggested_filename.endswith(".png")
    path = tmp_path / "snap.png"
    await download.save_as(path)
    assert png_size(path.read_bytes()) == (320, 240)

    # The same from the keyboard ("s"), and stats off/on ("i").
    async with page.expect_download() as info:
        await page.keyboard.press("s")
    assert (await info.value).suggested_filename.endswith(".png")
    await page.keyboard.press("i")
    assert await page.locator("#dv-stats").is_hidden()
    await page.keyboard.press("i")
    assert await page.locator("#dv-stats").is_visible()

    # Full screen, then out again.
    await page.click("#dv-fullscreen")
    await wait_js(
        page, "() => document.fullscreenElement && document.fullscreenElement.id === 'dv-stage'", 5
    )
    await page.keyboard.press("f")
    await wait_js(page, "() => !document.fullscreenElement", 5)

    # Esc goes back to the list; the tile keeps the same session (no new one).
    session = await page.evaluate("window.peercam.sessions.frontdoor.session")
    await page.keyboard.press("Escape")
    await wait_js(page, "() => document.body.dataset.view === 'devices'", 5)
    assert await page.evaluate("window.peercam.sessions.frontdoor.session") == session
    await wait_more_frames(page, "frontdoor", 10, 15)
    assert not log.unexpected(), log.errors


async def test_device_goes_offline_when_the_daemon_stops(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    page, log = await watching_page(chromium, site, broker, frames=10)
    card = '.card[data-device="frontdoor"]'
    # the count comes with the device's next status, not with the video
    await wait_js(page, js_card("frontdoor", "c.innerText.includes('1/4 watching')"), 10)

    assert await daemon.terminate() == 0
    await wait_js(
        page, f"() => document.querySelector('{card}').dataset.online === 'false'", 15, "offline"
    )
    assert (await page.inner_text(f"{card} .badge")).lower() == "offline"
    assert await page.evaluate("window.peercam.sessions.frontdoor.state") == "waiting"
    assert "Offline" in await page.inner_text(f"{card} .thumb-overlay")
    await page.screenshot(path=shot("dashboard-offline.png"))
    assert not log.unexpected(), log.errors


async def test_two_tabs_watch_at_once_and_a_closed_tab_says_bye(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    context = await chromium.new_context()
    tab1 = await context.new_page()
    tab2 = await context.new_page()
    logs = [watch_console(tab1), watch_console(tab2)]
    url = dashboard_url(site, broker, "alice")
    await tab1.goto(url)
    await tab2.goto(url)
    await wait_frames(tab1, "frontdoor", 15, 30)
    await wait_frames(tab2, "frontdoor", 15, 30)
    s1 = await tab1.evaluate("window.peercam.sessions.frontdoor.session")
    s2 = await tab2.evaluate("window.peercam.sessions.frontdoor.session")
    assert s1 != s2
    await daemon.wait_status(lambda s: s.get("viewers") == 2, 10)
    await wait_js(
        tab2,
        js_card("frontdoor", "c.innerText.includes('2/4 watching')"),
        10,
    )

    # Closing tab 1 sends bye for its session: the device frees the slot at once,
    # and tab 2 (same viewer id) keeps watching (no last will went out).
    async with DeviceSide(broker, "frontdoor") as spy:
        await tab1.close()
        await spy.wait_received(lambda v, m: m.get("type") == "bye", 10)
        await asyncio.sleep(0.5)  # anything else tab 1 sent on its way out
    assert [m for _, m in spy.received] == [
        {"v": 1, "type": "bye", "session": s1, "reason": "hangup"}
    ]
    await daemon.wait_status(lambda s: s.get("viewers") == 1, 10)
    await wait_more_frames(tab2, "frontdoor", 30, 15)
    assert await tab2.evaluate("window.peercam.sessions.frontdoor.session") == s2
    assert "last will" not in daemon.log_text()
    assert not logs[0].unexpected() and not logs[1].unexpected(), logs[0].errors + logs[1].errors


async def test_a_crashed_tab_is_ended_by_its_last_will(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    page, _ = await watching_page(chromium, site, broker, frames=10)
    await daemon.wait_status(lambda s: s.get("viewers") == 1, 10)
    cdp = await page.context.new_cdp_session(page)
    crash = asyncio.ensure_future(cdp.send("Page.crash"))  # never answers: the page dies
    await asyncio.wait({crash}, timeout=2)
    crash.cancel()
    # The renderer is gone without DISCONNECT: the broker publishes the device link's
    # will, bye "*", on peercam/frontdoor/in/alice, and the device closes the session.
    await daemon.wait_status(lambda s: s.get("viewers") == 0, 15)
    assert "last will or bye *" in daemon.log_text()


async def test_reconnects_after_the_device_restarts_and_the_broker_drops(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(chromium)
    await page.goto(dashboard_url(site, broker, "alice", device="frontdoor"))
    await wait_frames(page, "frontdoor", 10, 30)
    first = await page.evaluate("window.peercam.session")

    # The device process dies (no bye; its will says offline) and comes back.
    daemon.kill()
    await wait_js(page, "() => window.peercam.devices.frontdoor.state === 'offline'", 15, "offline")
    daemon.start()
    await daemon.wait_online(20)
    await wait_js(
        page,
        f"() => window.peercam.state === 'live' && window.peercam.session !== {json.dumps(first)}",
        30,
        "live again with a new session",
    )
    await wait_more_frames(page, "frontdoor", 20, 20)

    # The broker goes away for a moment (a network drop for every MQTT link).
    broker.stop()
    await wait_js(page, "() => window.peercam.broker !== 'connected'", 10, "broker lost")
    assert "reconnecting" in (await page.inner_text("#broker-status")).lower()
    await asyncio.sleep(1)
    broker.start()
    await wait_js(page, "() => window.peercam.broker === 'connected'", 20, "broker back")
    await daemon.wait_online(20)
    await wait_more_frames(page, "frontdoor", 30, 40)
    assert await page.evaluate("window.peercam.state") == "live"
    assert await page.inner_text("#broker-status") == ""
    assert not log.unexpected(["WebSocket connection to"]), log.errors


async def test_viewers_without_grants_are_told_so(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    """mallory may connect but the ACL grants her no device; carol may read the front
    door's status but not write to it (the broker refuses with MQTT 5 'not authorized')."""
    await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(chromium)
    await page.goto(dashboard_url(site, broker, "mallory"))
    text = await wait_js(
        page,
        "() => { const e = document.getElementById('devices-empty');"
        " return !e.hidden && /No device is visible/.test(e.textContent) && e.textContent; }",
        15,
        "no-device explanation",
    )
    assert '"mallory"' in text and "granted" in text
    dv_message = (
        "() => { const m = document.getElementById('dv-message');"
        " return !m.hidden && m.textContent; }"
    )
    await page.goto(dashboard_url(site, broker, "mallory") + "#/device/frontdoor")
    message = await wait_js(page, dv_message, 15, "no-status message")
    assert "No status from" in message and "not allowed to see it" in message

    carol, carol_log = await new_page(chromium)
    await carol.goto(dashboard_url(site, broker, "carol") + "#/device/frontdoor")
    message = await wait_js(carol, dv_message, 15, "not-authorised message")
    assert "Not authorised" in message and "peercam/frontdoor/in/carol" in message
    assert await carol.evaluate("window.peercam.sessions.frontdoor.state") == "error"
    await carol.screenshot(path=shot("dashboard-not-authorised.png"))
    assert not log.unexpected(), log.errors
    assert not carol_log.unexpected(), carol_log.errors


async def test_a_grid_of_devices_and_hidden_tiles_end_their_sessions(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    front = await start_device(daemon_factory, broker, tmp_path, "frontdoor")
    yard = await start_device(daemon_factory, broker, tmp_path, "backyard")
    page, log = await new_page(
        chromium, color_scheme="dark", viewport={"width": 1280, "height": 720}
    )
    await page.goto(dashboard_url(site, broker, "alice"))
    await wait_frames(page, "frontdoor", 30, 30)
    await wait_frames(page, "backyard", 30, 30)
    names = await page.locator(".card .card-name").all_inner_texts()
    assert names == ["Back yard", "Front door"]  # sorted by name
    await front.wait_status(lambda s: s.get("viewers") == 1, 10)
    await yard.wait_status(lambda s: s.get("viewers") == 1, 10)
    # A missed call in the front door's retained log, with a picture (a frame of its video).
    picture = await page.evaluate(
        "() => { const v = document.querySelector('.card[data-device=frontdoor] video');"
        " const c = document.createElement('canvas'); c.width = v.videoWidth;"
        " c.height = v.videoHeight; c.getContext('2d').drawImage(v, 0, 0);"
        " return c.toDataURL('image/jpeg', 0.8).split(',')[1]; }"
    )
    async with DeviceSide(broker, "frontdoor") as device:
        missed = "call-readme-0001"
        await device.publish(f"snapshot/{missed}", base64.b64decode(picture), retain=True)
        calls = [{"call": missed, "at": time.time() - 600, "reason": "missed", "snapshot": True}]
        await device.publish("calls", {"v": 1, "type": "calls", "calls": calls}, retain=True)
    await wait_js(page, image_loaded(f'.call-item[data-call="{missed}"] img', 320), 10)
    await page.mouse.move(0, 0)
    # (docs/images/dashboard.png in the README is this picture.)
    clip = {"x": 0, "y": 0, "width": 1280, "height": 560}
    await page.screenshot(path=shot("dashboard-grid.png"), clip=clip)

    # The large view of the back yard hides the front door's tile: its session ends
    # with bye, the back yard's goes on.
    front_session = await page.evaluate("window.peercam.sessions.frontdoor.session")
    async with DeviceSide(broker, "frontdoor") as spy:
        await page.click(f"{card('backyard')} .card-link")
        await spy.wait_received(
            lambda v, m: m == {"v": 1, "type": "bye", "session": front_session, "reason": "hangup"},
            10,
        )
    await front.wait_status(lambda s: s.get("viewers") == 0, 10)
    assert await page.evaluate("window.peercam.sessions.frontdoor.state") == "idle"
    await wait_more_frames(page, "backyard", 20, 10)
    await yard.wait_status(lambda s: s.get("viewers") == 1, 5)

    # Back to the grid, then live tiles off: both sessions end; tiles keep a still.
    await page.keyboard.press("Escape")
    await wait_frames(page, "frontdoor", 5, 30)
    await page.uncheck("#live-tiles")
    await front.wait_status(lambda s: s.get("viewers") == 0, 10)
    await yard.wait_status(lambda s: s.get("viewers") == 0, 10)
    await wait_js(page, js_card("frontdoor", "!c.querySelector('.thumb-still').hidden"), 5)
    assert "Live tiles are off" in await page.inner_text(f"{card('frontdoor')} .thumb-overlay")
    await page.screenshot(path=shot("dashboard-tiles-off.png"))
    # The choice is remembered; turning it on again starts the tiles.
    await page.reload()
    assert not await page.is_checked("#live-tiles")
    await page.check("#live-tiles")
    await wait_frames(page, "backyard", 5, 30)
    assert not log.unexpected(), log.errors


async def test_phone_layout(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(
        chromium,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    await page.goto(dashboard_url(site, broker, "alice"))
    await wait_frames(page, "frontdoor", 10, 30)
    no_overflow = "() => document.documentElement.scrollWidth <= window.innerWidth"
    assert await page.evaluate(no_overflow)
    # Every video plays inline (iOS would otherwise go full screen) and muted (autoplay).
    assert await page.evaluate(
        "() => [...document.querySelectorAll('video')].every(v => v.playsInline && v.muted)"
    )
    await page.screenshot(path=shot("dashboard-phone-devices.png"))
    await page.tap(f"{card('frontdoor')} .card-link")
    await wait_js(page, "() => document.body.dataset.view === 'device'", 10)
    await wait_more_frames(page, "frontdoor", 10, 15)
    assert await page.evaluate(no_overflow)
    # Buttons are finger-sized.
    heights = await page.evaluate(
        "() => [...document.querySelectorAll('#device-view button')]"
        ".filter(b => b.offsetParent).map(b => b.getBoundingClientRect().height)"
    )
    assert heights and min(heights) >= 44
    await page.screenshot(path=shot("dashboard-phone-live.png"))
    # Sound needs a tap (a user gesture) on phones.
    await page.tap("#dv-sound") if await page.is_visible("#dv-sound") else None
    assert not log.unexpected(), log.errors


async def test_reconnects_after_the_network_drops(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    """The page reaches the broker through a TCP relay that the test cuts (RST, then
    nothing): the broker sends the device link's will, the device closes the session;
    when the network is back, the links reconnect and the page starts a new session."""
    daemon = await start_device(daemon_factory, broker, tmp_path)
    relay = await TcpRelay(broker.ws_port).start()
    try:
        page, log = await new_page(chromium)
        ws_url = f"ws://127.0.0.1:{relay.port}/mqtt"
        await page.goto(dashboard_url(site, ws_url, "alice", device="frontdoor"))
        await wait_frames(page, "frontdoor", 10, 30)
        first = await page.evaluate("window.peercam.session")

        await relay.cut()
        await wait_js(page, "() => window.peercam.broker !== 'connected'", 15, "links down")
        await daemon.wait_status(lambda s: s.get("viewers") == 0, 20)
        assert "last will or bye *" in daemon.log_text()
        await asyncio.sleep(2)
        await relay.restore()
        await wait_js(page, "() => window.peercam.broker === 'connected'", 20, "links back")
        await wait_js(
            page,
            "() => window.peercam.state === 'live'"
            f" && window.peercam.session !== {json.dumps(first)}",
            40,
            "live again with a new session",
        )
        await wait_more_frames(page, "frontdoor", 30, 20)
        await daemon.wait_status(lambda s: s.get("viewers") == 1, 10)
        assert not log.unexpected(["WebSocket connection to"]), log.errors
    finally:
        await relay.stop()
