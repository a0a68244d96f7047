"""Calls in the dashboard (real Chromium, real Mosquitto, real daemon for the video).

The call events here come from a Python MQTT client holding the device's
credentials (``DeviceSide``), publishing exactly what the device contract says
(``events``: call / call-ended / opened; retained ``calls`` and
``snapshot/{call}``) and recording what the dashboards send back (offer with
``call``, decline, reply, open). That is the dashboard's side of the contract,
whatever rings the bell; tests/test_dashboard_device_calls.py rings the real
daemon's button.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    DeviceSide,
    audio_direction,
    broker_fixture,
    chromium_fixture,
    dashboard_url,
    image_loaded,
    jpeg,
    new_page,
    shot,
    site_fixture,
    start_device,
    wait_frames,
    wait_js,
    wait_more_frames,
    watching_page,
)
from tests.mosquitto import MosquittoBroker

pytestmark = pytest.mark.browser


def new_call_id() -> str:
    return f"call-{secrets.token_hex(6)}"


def ring(call: str, expires_in: float = 30, at: float | None = None) -> dict[str, Any]:
    return {"v": 1, "type": "call", "call": call, "expires_in": expires_in, "at": at or time.time()}


def ended(call: str, reason: str, by: str | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"v": 1, "type": "call-ended", "call": call, "reason": reason}
    if by:
        message["by"] = by
    return message


RINGING = "() => document.getElementById('ring-dialog').open"
NOT_RINGING = (
    "() => !document.getElementById('ring-dialog').open && window.peercam.ringing.length === 0"
)


async def test_a_call_rings_in_two_tabs_and_stops_in_both_when_one_answers(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path)
    alice, alice_log = await new_page(chromium)
    bob, bob_log = await new_page(chromium)
    await alice.goto(dashboard_url(site, broker, "alice"))
    await bob.goto(dashboard_url(site, broker, "bob"))
    await wait_frames(alice, "frontdoor", 5, 30)
    await wait_frames(bob, "frontdoor", 5, 30)

    async with DeviceSide(broker, "frontdoor") as device:
        call = new_call_id()
        # Bob's dashboard must still ring after Alice's whole answer: a long expiry.
        await device.publish("events", ring(call, expires_in=300))
        for page in (alice, bob):
            await wait_js(page, RINGING, 10, "the ringing dialog")
            assert await page.inner_text("#ring-title") == "Front door is ringing"
            assert await page.title() == "🔔 Front door ringing · peercam"
            card = page.locator('.card[data-device="frontdoor"]')
            assert await card.get_attribute("data-ringing") == "true"
        # The dialog shows the live view of the ringing device.
        await wait_js(alice, "() => document.getElementById('ring-video').videoWidth === 320", 10)
        await alice.screenshot(path=shot("dashboard-ringing.png"))

        # Alice answers: an offer with the call id and a sendrecv audio m-line (her microphone).
        await alice.click("#ring-answer")
        viewer, offer = await device.wait_received(
            lambda v, m: m.get("type") == "offer" and m.get("call") == call, 15
        )
        assert viewer == "alice"
        assert audio_direction(offer["sdp"]) == "sendrecv"
        await wait_js(alice, NOT_RINGING, 5, "alice stops ringing at once")
        await wait_js(
            alice,
            f"() => {{ const s = window.peercam.sessions.frontdoor;"
            f" return s.call === {json.dumps(call)} && s.mic && s.state === 'live'; }}",
            20,
            "alice in the call, live",
        )
        assert alice.url.endswith("#/device/frontdoor")
        assert await alice.locator("#dv-call-controls").is_visible()
        assert await bob.evaluate(RINGING)  # until the device says the call was answered

        # The device tells everybody; Bob's dashboard stops ringing.
        await device.publish("events", ended(call, "answered", "alice"))
        await wait_js(bob, NOT_RINGING, 10, "bob stops ringing")
        await wait_js(
            bob,
            "() => document.getElementById('toasts').innerText.includes('answered by alice')",
            5,
        )
        assert (
            await bob.locator('.card[data-device="frontdoor"]').get_attribute("data-ringing")
            == "false"
        )
        assert not (await bob.title()).startswith("🔔")
        # Alice stays in her call.
        assert await alice.evaluate("window.peercam.sessions.frontdoor.call") == call
        await wait_more_frames(alice, "frontdoor", 10, 15)

        # Microphone toggle and push-to-talk.
        await alice.click("#dv-mic")
        assert await alice.get_attribute("#dv-mic", "aria-pressed") == "false"
        assert "microphone off" in await alice.inner_text("#dv-call-banner")
        await alice.locator("#dv-ptt").dispatch_event("pointerdown")
        assert "microphone on" in await alice.inner_text("#dv-call-banner")
        await alice.locator("#dv-ptt").dispatch_event("pointerup")
        assert "microphone off" in await alice.inner_text("#dv-call-banner")
        await alice.click("#dv-mic")
        await alice.screenshot(path=shot("dashboard-in-call.png"))

        # Hang up: bye for the call's session; the large view goes on without the call.
        call_session = await alice.evaluate("window.peercam.sessions.frontdoor.session")
        await alice.click("#dv-hangup")
        await device.wait_received(
            lambda v, m: m.get("type") == "bye" and m.get("session") == call_session, 10
        )
        await wait_js(
            alice,
            "() => { const s = window.peercam.sessions.frontdoor;"
            " return s.call === null && !s.mic && s.state === 'live'; }",
            20,
            "watching again without the call",
        )
    assert not alice_log.unexpected(), alice_log.errors
    assert not bob_log.unexpected(), bob_log.errors


async def test_decline_missed_calls_with_pictures_and_stale_rings(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    await start_device(daemon_factory, broker, tmp_path)
    alice, log = await watching_page(chromium, site, broker)

    async with DeviceSide(broker, "frontdoor") as device:
        # Decline.
        declined = new_call_id()
        await device.publish("events", ring(declined))
        await wait_js(alice, RINGING, 10)
        await alice.click("#ring-decline")
        viewer, message = await device.wait_received(lambda v, m: m.get("type") == "decline", 10)
        assert (viewer, message) == ("alice", {"v": 1, "type": "decline", "call": declined})
        await wait_js(alice, NOT_RINGING, 5)
        await device.publish("events", ended(declined, "declined", "alice"))

        # Missed: nobody answers; the ring stops when the call expires, even before the
        # device's call-ended arrives.
        missed = new_call_id()
        # Long enough for a busy machine to show the ring before it expires; far below
        # the dashboard's 30 s default, which the bound below would not wait for.
        await device.publish("events", ring(missed, expires_in=6))
        await wait_js(alice, RINGING, 10)
        await wait_js(alice, NOT_RINGING, 20, "ringing stops at expiry")
        await device.publish("events", ended(missed, "missed"))
        await wait_js(
            alice, "() => document.getElementById('toasts').innerText.includes('missed call')", 5
        )

        # A ring that arrives after its call expired is not shown.
        await device.publish("events", ring(new_call_id(), expires_in=30, at=time.time() - 120))

        # The device's retained call log and the picture of the missed call.
        now = time.time()
        log_message = {
            "v": 1,
            "type": "calls",
            "calls": [
                {"call": missed, "at": now - 5, "reason": "missed", "snapshot": True},
                {
                    "call": declined,
                    "at": now - 20,
                    "reason": "declined",
                    "by": "alice",
                    "snapshot": False,
                },
            ],
        }
        await device.publish(f"snapshot/{missed}", jpeg(64, 48), retain=True)
        await device.publish("calls", log_message, retain=True)

        item = f'#recent-calls-list .call-item[data-call="{missed}"]'
        await wait_js(
            alice,
            image_loaded(f"{item} img", 64),
            10,
            "missed call picture",
        )
        assert "Front door" in await alice.inner_text(item)
        assert "1 missed call" in await alice.inner_text('.card[data-device="frontdoor"]')
        assert not await alice.evaluate(RINGING)
        await alice.screenshot(path=shot("dashboard-missed-calls.png"))

        # A dashboard opened later gets the log (retained) with the picture too.
        bob, bob_log = await new_page(chromium)
        await bob.goto(dashboard_url(site, broker, "bob") + "#/device/frontdoor")
        dv_item = f'#dv-calls .call-item[data-call="{missed}"]'
        await wait_js(
            bob,
            image_loaded(f"{dv_item} img", 64),
            15,
        )
        declined_text = await bob.inner_text(f'#dv-calls .call-item[data-call="{declined}"]')
        assert "declined by alice" in declined_text.lower()
        assert (
            await bob.locator(
                f'#dv-calls .call-item[data-call="{declined}"] .call-pic-none'
            ).count()
            == 1
        )
    assert not log.unexpected(), log.errors
    assert not bob_log.unexpected(), bob_log.errors


async def test_a_call_that_ends_while_the_microphone_is_asked_for_is_not_answered(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    """The browser's microphone prompt takes a while (a person reads it); meanwhile the
    call is missed. The page must not then answer a call that no longer exists."""
    await start_device(daemon_factory, broker, tmp_path)
    slow_prompt = """
        const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
        navigator.mediaDevices.getUserMedia = (c) =>
          new Promise((ok) => setTimeout(ok, 2500)).then(() => real(c));
    """
    alice, log = await watching_page(chromium, site, broker, init_script=slow_prompt)
    async with DeviceSide(broker, "frontdoor") as device:
        call = new_call_id()
        await device.publish("events", ring(call, expires_in=300))
        await wait_js(alice, RINGING, 10)
        await alice.click("#ring-answer")  # the microphone prompt is "open" for 2.5 s
        await device.publish("events", ended(call, "missed"))
        await wait_js(
            alice, "() => document.getElementById('toasts').innerText.includes('missed call')", 5
        )
        await alice.wait_for_timeout(4000)  # past the prompt
        answers = [m for _, m in device.received if m.get("type") == "offer" and "call" in m]
        assert answers == [], "the page answered a call that had ended"
        assert await alice.evaluate("window.peercam.sessions.frontdoor.call") is None
        assert await alice.evaluate("window.peercam.sessions.frontdoor.mic") is False
        await wait_more_frames(alice, "frontdoor", 10, 15)  # still watching
    assert not log.unexpected(), log.errors


async def test_a_repeated_answer_does_not_end_a_working_session(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    """MQTT QoS 1 may deliver a message twice: a second answer must change nothing."""
    await start_device(daemon_factory, broker, tmp_path)
    alice, log = await watching_page(chromium, site, broker)
    session = await alice.evaluate("window.peercam.sessions.frontdoor.session")
    async with DeviceSide(broker, "frontdoor") as device:
        again = {"v": 1, "type": "answer", "session": session, "sdp": "v=0\r\n"}
        await device.publish("out/alice", again)
    await wait_more_frames(alice, "frontdoor", 30, 15)
    state = await alice.evaluate("window.peercam.sessions.frontdoor")
    assert state["state"] == "live" and state["session"] == session, state
    assert not log.unexpected(), log.errors


async def test_one_devices_odd_retained_data_does_not_stop_the_others_from_showing(
    chromium: Any, site: str, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    """Retained JSON with the wrong types (an object that cannot become text, a time far
    out of range) from one device: every other card, and the missed-call list, still work.
    "Back yard" sorts before "Front door", so its card is rendered first."""
    odd = {"toString": 1}  # `${odd}` and [odd].join() throw in JavaScript
    async with DeviceSide(broker, "backyard") as backyard:
        await backyard.publish(
            "status",
            {
                "v": 1,
                "type": "status",
                "state": "online",
                "name": "Back yard",
                "viewers": 0,
                "max_viewers": 4,
                "call": odd,
                "faults": [odd, "camera: no video frame for 6 s"],
                "warnings": [odd],
            },
            retain=True,
        )
        odd_call = new_call_id()
        await backyard.publish(
            "calls",
            {
                "v": 1,
                "type": "calls",
                "calls": [
                    {"call": odd_call, "at": 1e300, "reason": "missed", "by": odd},
                    {"call": new_call_id(), "at": odd, "reason": odd, "snapshot": odd},
                ],
            },
            retain=True,
        )
    await start_device(daemon_factory, broker, tmp_path)
    alice, log = await watching_page(chromium, site, broker)
    front = alice.locator('.card[data-device="frontdoor"]')
    await wait_js(
        alice,
        "() => document.querySelector('.card[data-device=\"frontdoor\"]')"
        ".innerText.includes('1/4 watching')",
        15,
        "the front door's card shows its viewer",
    )
    assert await front.get_attribute("data-online") == "true"
    back = await alice.inner_text('.card[data-device="backyard"]')
    assert "camera: no video frame for 6 s" in back
    item = f'#recent-calls-list .call-item[data-call="{odd_call}"]'
    await wait_js(alice, f"() => document.querySelector('{item}') !== null", 10)
    assert "Back yard" in await alice.inner_text(item)
    assert not log.unexpected(), log.errors


async def test_quick_replies_door_and_refusals(
    chromium: Any, site: str, broker: MosquittoBroker
) -> None:
    async with DeviceSide(broker, "backyard") as device:
        # A device that announces quick replies and a door strike in its status.
        status = {
            "v": 1,
            "type": "status",
            "state": "online",
            "name": "Back yard",
            "viewers": 0,
            "max_viewers": 4,
            "call": None,
            "video": {"codec": "H264", "width": 320, "height": 240, "fps": 30},
            "audio": None,
            "version": "test",
            "replies": [
                {"id": "coming", "text": "We're coming"},
                {"id": "later", "text": "Please leave it at the door"},
            ],
            "door": True,
        }
        await device.publish("status", status, retain=True)
        alice, log = await new_page(chromium)
        await alice.goto(dashboard_url(site, broker, "alice") + "#/device/backyard")
        await alice.locator('#dv-replies button[data-reply="coming"]').wait_for()
        assert (
            await alice.inner_text('#dv-replies button[data-reply="coming"]')
            == "Reply: “We're coming”"
        )

        await alice.click('#dv-replies button[data-reply="coming"]')
        viewer, message = await device.wait_received(lambda v, m: m.get("type") == "reply", 10)
        assert (viewer, message) == ("alice", {"v": 1, "type": "reply", "reply": "coming"})

        await alice.click("#dv-open")
        viewer, message = await device.wait_received(lambda v, m: m.get("type") == "open", 10)
        assert (viewer, message) == ("alice", {"v": 1, "type": "open"})
        # This device does not let alice open it.
        refusal = {
            "v": 1,
            "type": "error",
            "code": "unauthorized",
            "message": "alice may not open this door",
        }
        await device.publish("out/alice", refusal)
        await wait_js(
            alice, "() => document.getElementById('toasts').innerText.includes('not allowed')", 5
        )
        # Somebody who may, did.
        await device.publish("events", {"v": 1, "type": "opened", "by": "bob", "at": time.time()})
        await wait_js(
            alice, "() => document.getElementById('toasts').innerText.includes('opened by bob')", 5
        )
        await alice.screenshot(path=shot("dashboard-door.png"))
        # The retained status goes away: the device was removed.
        await device.publish("status", b"", retain=True)
        await wait_js(alice, "() => !('backyard' in window.peercam.devices)", 5)
        assert not log.unexpected(), log.errors
