"""The dashboard in Firefox ESR (Debian's ``firefox-esr``, driven through Marionette).

Offline, this Firefox has no H.264 for WebRTC (the OpenH264 plugin is a
download), as a fresh or locked-down Firefox may not: the dashboard must say
what to do instead of quoting SDP, and everything that needs no video (sign
in, devices, a ring with Answer and Decline, declining) must work.
"""

from __future__ import annotations

import asyncio
import base64
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import broker_fixture, shot, site_fixture, start_device
from tests.firefox import FIREFOX, firefox, wait_script
from tests.mosquitto import MosquittoBroker

__all__ = ["broker_fixture", "site_fixture"]

pytestmark = pytest.mark.skipif(
    not Path(FIREFOX).exists(), reason="firefox-esr is not installed (scripts/test.sh installs it)"
)

CARD = "document.querySelector('.card[data-device=frontdoor]')"


def drive(client: Any, site: str, broker: MosquittoBroker, daemon: Any) -> dict[str, Any]:
    from marionette_driver.by import By

    client.navigate(site)
    wait_script(client, "return document.body.dataset.view === 'signin'", 15, "sign-in view")
    client.find_element(By.ID, "f-broker").send_keys(broker.ws_url)
    client.find_element(By.ID, "f-viewer").send_keys("alice")
    client.find_element(By.ID, "f-password").send_keys("alice-pw")
    client.find_element(By.ID, "signin-submit").click()
    wait_script(client, "return document.body.dataset.view === 'devices'", 20, "devices view")
    wait_script(
        client, f"const c = {CARD}; return c && c.dataset.online === 'true'", 20, "frontdoor online"
    )
    # No H.264 in this Firefox: the tile says what to do, not SDP.
    tile = wait_script(
        client,
        f"const t = {CARD}.innerText; return t.includes('OpenH264') && t",
        20,
        "the no-H.264 sentence on the tile",
    )
    Path(shot("firefox-no-h264.png")).write_bytes(base64.b64decode(client.screenshot()))

    # Answering in this Firefox: the large view says the same, and nothing is offered
    # (the call rings on and is missed: a phone that can play it may still answer).
    daemon.signal(signal.SIGUSR1)  # --fake-hardware: the call button
    wait_script(client, "return document.getElementById('ring-dialog').open", 20, "ringing")
    client.find_element(By.ID, "ring-answer").click()
    answered = wait_script(
        client,
        "const t = document.getElementById('dv-overlay').textContent;"
        " return document.body.dataset.view === 'device' && t.includes('OpenH264') && t",
        20,
        "the no-H.264 sentence in the large view after Answer",
    )
    deadline = time.monotonic() + 20
    while "missed: nobody answered" not in daemon.log_text():  # the unanswered call ends
        assert time.monotonic() < deadline, "the call Firefox could not answer was not missed"
        time.sleep(0.1)
    client.execute_script("location.hash = '#/'")

    daemon.signal(signal.SIGUSR1)
    wait_script(
        client, "return document.getElementById('ring-dialog').open", 20, "the ringing dialog"
    )
    buttons = client.execute_script(
        "return ['ring-answer', 'ring-decline'].map((id) => {"
        " const b = document.getElementById(id); const r = b.getBoundingClientRect();"
        " return [b.textContent.trim(), r.width > 0 && r.height > 0]; })"
    )
    title = client.find_element(By.ID, "ring-title").text
    Path(shot("firefox-ringing.png")).write_bytes(base64.b64decode(client.screenshot()))
    client.find_element(By.ID, "ring-decline").click()
    wait_script(
        client,
        "return !document.getElementById('ring-dialog').open",
        15,
        "the dialog closes after Decline",
    )
    sdp_words = client.execute_script(
        "return /profile-level-id|packetization-mode|m=video/.test(document.body.innerText)"
    )
    return {
        "tile": tile,
        "answered": answered,
        "buttons": buttons,
        "title": title,
        "sdp_words": sdp_words,
    }


async def test_firefox_signs_in_sees_devices_rings_and_explains_missing_h264(
    site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    daemon = await start_device(
        daemon_factory,
        broker,
        tmp_path,
        extra_args=["--fake-hardware"],
        call={"ring_timeout": 3.0, "min_press_interval": 0.5},
    )

    def run() -> dict[str, Any]:
        with firefox(tmp_path / "firefox") as client:
            return drive(client, site, broker, daemon)

    seen = await asyncio.to_thread(run)
    assert "Front door" in seen["tile"]
    assert "about:addons" in seen["tile"] and "about:addons" in seen["answered"]
    assert seen["buttons"] == [["Answer", True], ["Decline", True]]
    assert "Front door" in seen["title"]
    assert not seen["sdp_words"], "SDP wording shown to a person"
    assert "missed: nobody answered" in daemon.log_text()
    assert "is answering" not in daemon.log_text(), "Firefox offered although it cannot play"
    deadline = time.monotonic() + 10
    while "declined by alice" not in daemon.log_text():
        assert time.monotonic() < deadline, "the device never got alice's decline"
        await asyncio.sleep(0.1)
