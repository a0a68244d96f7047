"""The dashboard in real Chromium against a real Mosquitto (passwords, ACL, WebSockets)
and the real daemon with the test pattern.

Each test looks at what a user sees (the page's DOM) and at what the page reports
(`window.peercam`, fed by RTCPeerConnection.getStats()), and fails on console errors.
Screenshots of the main states go to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from peercam.webserver import StaticServer
from tests.dashboard_env import (
    ARTIFACTS,
    DASHBOARD,
    FAKE_MEDIA_ARGS,
    PREFIX,
    DeviceSide,
    dashboard_url,
    device_overrides,
    png_size,
    secure_broker,
    wait_frames,
    wait_js,
    wait_more_frames,
    watch_console,
)
from tests.mosquitto import MosquittoBroker, free_port, port_accepts

pytestmark = pytest.mark.browser


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """The dashboard folder on a local static server (no generated config.json)."""
    server = StaticServer(DASHBOARD)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    async with async_playwright() as pw:
        browser = await launch_chromium(pw, extra_args=FAKE_MEDIA_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def broker(mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path) -> MosquittoBroker:
    return secure_broker(mosquitto_factory, tmp_path / "broker")


async def start_device(daemon_factory: Any, broker: MosquittoBroker, tmp_path: Path, device: str = "frontdoor", **cfg: Any) -> Any:
    overrides = device_overrides(tmp_path / "secrets", device)
    overrides.update(cfg)
    from tests.dashboard_env import PASSWORDS

    return await daemon_factory(
        broker, device=device, config=overrides, status_auth=(device, PASSWORDS[device])
    )


async def new_page(browser: Any, **context_args: Any) -> tuple[Any, Any]:
    context = await browser.new_context(**context_args)
    page = await context.new_page()
    return page, watch_console(page)


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


# --- sign in ------------------------------------------------------------------------------


async def test_sign_in_with_the_form_and_see_the_device_live(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path)
    page, log = await new_page(chromium)
    await page.goto(site)
    assert await page.evaluate("document.body.dataset.view") == "signin"
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
    await wait_js(page, "() => document.querySelector('.card[data-device=frontdoor]').dataset.state === 'live'", 5)
    assert "Front door" in await card.inner_text()
    await page.screenshot(path=shot("dashboard-devices.png"))

    # Remembered: a reload signs in by itself.
    await page.reload()
    await wait_js(page, "() => document.body.dataset.view === 'devices'", 15, "devices after reload")
    assert await page.evaluate("window.peercam.viewer") == "alice"
    assert not log.unexpected(), log.errors


async def test_wrong_password_is_said_plainly(chromium: Any, site: str, broker: MosquittoBroker) -> None:
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
