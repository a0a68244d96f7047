"""Calls end to end: the real daemon's call button (SIGUSR1 with ``--fake-hardware``)
rings real dashboards in Chromium; answering sends talkback from Chromium's fake
microphone, which the device writes to a WAV file (``[talkback] sink = "wav:PATH"``);
the door strike (mock pin) opens for an allowed viewer in the call only; decline and
missed calls end the ringing everywhere (the demo's ring button: tests/test_demo_browser.py, in
namespaces, since the demo offers the machine's own addresses).
tests/test_dashboard_calls.py covers the dashboard's side of the same contract with
events published by a test client."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import struct
import time
import wave
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    broker_fixture,
    card,
    chromium_fixture,
    dashboard_url,
    image_loaded,
    new_page,
    shot,
    site_fixture,
    start_device,
    toast_says,
    wait_frames,
    wait_js,
    watching_page,
)
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.browser

RINGING = "() => document.getElementById('ring-dialog').open"
NOT_RINGING = (
    "() => !document.getElementById('ring-dialog').open && window.peercam.ringing.length === 0"
)


async def ringing_device(
    daemon_factory: Any, broker: MosquittoBroker, tmp_path: Path, **cfg: Any
) -> Any:
    return await start_device(
        daemon_factory, broker, tmp_path, extra_args=["--fake-hardware"], **cfg
    )


def press_button(daemon: Any) -> None:
    """The fake hardware's call button: SIGUSR1 to the daemon."""
    daemon.signal(signal.SIGUSR1)


async def eventually_logged(daemon: Any, text: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"the daemon did not log {text!r} within {timeout} s")
        await asyncio.sleep(0.1)


def wav_level(path: Path) -> tuple[float, int]:
    """(seconds, peak sample) of a 16-bit PCM WAV file."""
    with wave.open(str(path), "rb") as w:
        assert w.getsampwidth() == 2, "expected 16-bit PCM"
        frames = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    samples = struct.unpack(f"<{len(frames) // 2}h", frames)
    return seconds, max((abs(s) for s in samples), default=0)


async def test_the_button_rings_two_dashboards_and_answering_stops_both_with_talkback(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    sink = tmp_path / "talkback.wav"
    daemon = await ringing_device(
        daemon_factory,
        broker,
        tmp_path,
        talkback={"sink": f"wav:{sink}"},
        gpio={"door_pin": 22, "door_openers": ["alice"]},
    )
    alice, alice_log = await new_page(chromium)
    bob, bob_log = await new_page(chromium)
    await alice.goto(dashboard_url(site, broker, "alice"))
    await bob.goto(dashboard_url(site, broker, "bob"))
    await wait_frames(alice, "frontdoor", 5, 30)
    await wait_frames(bob, "frontdoor", 5, 30)

    press_button(daemon)
    for page in (alice, bob):
        await wait_js(page, RINGING, 15, "ringing after the button press")
    call = await alice.evaluate("window.peercam.ringing[0].call")
    assert await bob.evaluate("window.peercam.ringing[0].call") == call
    await daemon.wait_status(lambda s: s.get("call") == call, 10)

    await alice.click("#ring-answer")
    # The device ends the ringing everywhere: Bob's dashboard stops.
    await wait_js(bob, NOT_RINGING, 15, "bob stops ringing")
    await wait_js(bob, toast_says("answered by alice"), 5)
    assert await bob.get_attribute(card("frontdoor"), "data-ringing") == "false"
    await wait_js(
        alice,
        f"() => {{ const s = window.peercam.sessions.frontdoor;"
        f" return s.call === {json.dumps(call)} && s.mic && s.state === 'live'"
        f" && s.stats.talkbackPackets > 100; }}",
        30,
        "alice talks (fake microphone packets sent)",
    )
    await alice.screenshot(path=shot("dashboard-device-call.png"))

    # The door: alice (an opener, in the call) may open it and everybody hears of it;
    # bob may not.
    await alice.click("#dv-open")
    await wait_js(alice, toast_says("the door was opened by you"), 10)
    await wait_js(bob, toast_says("the door was opened by alice"), 10)
    await bob.goto(dashboard_url(site, broker, "bob") + "#/device/frontdoor")
    await bob.click("#dv-open")
    await wait_js(bob, toast_says("not allowed"), 10)

    # A quick reply the device announced (it has a speaker: the WAV sink) plays on it.
    await alice.click('#dv-replies button[data-reply="coming"]')
    await eventually_logged(daemon, "alice: playing quick reply 'coming'")

    await alice.click("#dv-hangup")

    # The device wrote what it heard: Chromium's fake microphone beeps.
    deadline = time.monotonic() + 20
    while True:
        try:
            seconds, peak = wav_level(sink)
        except (FileNotFoundError, EOFError, wave.Error, AssertionError):
            seconds, peak = 0.0, 0
        if seconds >= 1.0 and peak > 1000:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"talkback WAV {sink}: {seconds:.1f} s, peak {peak}")
        await asyncio.sleep(0.3)
    assert math.isfinite(seconds)
    await daemon.wait_status(lambda s: s.get("call") is None, 15)
    assert not alice_log.unexpected(), alice_log.errors
    assert not bob_log.unexpected(), bob_log.errors


async def test_decline_and_missed_with_the_device(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    # ring_timeout: time for a busy machine to show the first ring and click "decline"
    # before the call expires; the second call is then missed after it.
    daemon = await ringing_device(
        daemon_factory, broker, tmp_path, call={"ring_timeout": 10, "min_press_interval": 0}
    )
    alice, log = await watching_page(chromium, site, broker)

    press_button(daemon)
    await wait_js(alice, RINGING, 15)
    declined = await alice.evaluate("window.peercam.ringing[0].call")
    await alice.click("#ring-decline")
    await wait_js(alice, NOT_RINGING, 5)
    await daemon.wait_status(lambda s: s.get("call") is None, 10)

    press_button(daemon)
    await wait_js(alice, RINGING, 15)
    missed = await alice.evaluate("window.peercam.ringing[0].call")
    assert missed != declined
    # Nobody answers: the device gives up after expires_in and says "missed".
    await wait_js(alice, toast_says("missed call"), 30, "the device's missed call")
    await wait_js(alice, NOT_RINGING, 5)
    item = f'#recent-calls-list .call-item[data-call="{missed}"]'
    await alice.locator(item).wait_for(timeout=15000)
    calls = await alice.evaluate("window.peercam.calls.frontdoor")
    entry = next(c for c in calls if c["call"] == missed)
    assert entry["reason"] == "missed"
    if entry.get("snapshot"):
        await wait_js(alice, image_loaded(f"{item} img"), 15, "the missed call's picture")
    assert any(c["call"] == declined and c["reason"] == "declined" for c in calls)
    assert not log.unexpected(), log.errors
