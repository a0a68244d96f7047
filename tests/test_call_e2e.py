"""The call button end to end: gpiozero mock pins → real daemon code → real Mosquitto → viewers.

The daemon runs in this process (``Daemon`` with gpiozero's ``MockFactory``)
so the tests can press the button pin and read the LED and relay pins'
histories, exactly as gpiozero's own tests do.  One test drives the
subprocess daemon with ``--fake-hardware`` and SIGUSR1, as scripts do.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import av
import pytest
from gpiozero.pins.mock import MockFactory

from peercam.config import config_from_dict
from peercam.daemon import Daemon
from tests.conftest import DaemonFactory
from tests.daemon_proc import default_config, merge_config
from tests.mosquitto import MosquittoBroker
from tests.tone import ToneTrack, dominant_frequency, read_wav, rms
from tests.viewer import ViewerFactory
from tests.waiting import wait_until

BUTTON, LED, DOOR = 17, 27, 22


@dataclass
class Door:
    daemon: Daemon
    factory: MockFactory
    stop: asyncio.Event
    task: asyncio.Task[None]
    wav: Path

    @property
    def button(self) -> Any:
        return self.factory.pin(BUTTON)

    def led_states(self) -> list[bool]:
        return [bool(s.state) for s in self.factory.pin(LED).states]

    def door_states(self) -> list[bool]:
        return [bool(s.state) for s in self.factory.pin(DOOR).states]

    async def press(self, hold: float = 0.05) -> None:
        self.button.drive_low()
        await asyncio.sleep(hold)
        self.button.drive_high()


StartDoor = Callable[..., Awaitable[Door]]


@pytest.fixture
async def door_factory(mosquitto: MosquittoBroker, tmp_path: Path) -> AsyncIterator[StartDoor]:
    doors: list[Door] = []

    async def start(**overrides: Any) -> Door:
        wav = tmp_path / f"speaker-{len(doors)}.wav"
        base = merge_config(
            default_config(mosquitto.url, device="frontdoor"),
            {"talkback": {"sink": f"wav:{wav}"}, "call": {"min_press_interval": 0.5}},
        )
        config = config_from_dict(merge_config(base, overrides))
        factory = MockFactory()
        daemon = Daemon(config, pin_factory=factory)
        stop = asyncio.Event()
        task = asyncio.create_task(daemon.run(stop))
        door = Door(daemon, factory, stop, task, wav)
        doors.append(door)
        ready = asyncio.create_task(daemon.ready.wait())
        await asyncio.wait({ready, task}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert ready.done(), "the daemon did not come online within 20 s"
        return door

    yield start
    for door in doors:
        door.stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(door.task, 20)
        door.factory.reset()


async def retained(broker: MosquittoBroker, topic: str, timeout: float = 10.0) -> bytes:
    """The retained (or next) message on ``topic``."""
    async with aiomqtt.Client("127.0.0.1", broker.port, identifier=None) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray)
                return bytes(payload)
    raise AssertionError("unreachable")


def audio_direction(sdp: str | None) -> str:
    """The direction attribute of the audio m-line of ``sdp``."""
    section = (sdp or "").split("m=audio", 1)[1].split("\r\nm=", 1)[0]
    return next(a for a in ("sendrecv", "sendonly", "recvonly", "inactive") if f"a={a}" in section)


def toggles(states: list[bool]) -> int:
    return sum(1 for a, b in itertools.pairwise(states) if a != b)


async def test_press_rings_everyone_answer_talks_and_hangs_up(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory()
    alice = await viewer_factory(mosquitto, "alice")
    bob = await viewer_factory(mosquitto, "bob")
    await alice.wait_status(state="online", call=None)
    assert alice.status is not None and alice.status["button"] is True

    await door.press()
    ring = await alice.next_event()
    assert ring["type"] == "call" and ring["expires_in"] == 30.0
    assert (await bob.next_event())["call"] == ring["call"]
    call = ring["call"]
    status = await bob.wait_status(call=call)
    assert status["camera"] in ("starting", "streaming")  # the camera starts with the ring

    # The snapshot taken at the press is a real JPEG of the camera's picture.
    jpeg = await retained(mosquitto, f"peercam/frontdoor/snapshot/{call}")
    with av.open(io.BytesIO(jpeg)) as container:
        picture = next(container.decode(video=0))
    assert (picture.width, picture.height) == (320, 240)

    # The LED blinks while it rings.
    await wait_until(lambda: toggles(door.led_states()) >= 3, "the LED never blinked")

    session = await alice.watch(call=call, send_audio=ToneTrack(440.0))
    assert session.welcome is not None and session.welcome["talkback"] is True
    # No microphone configured: the device only receives (talkback).
    assert audio_direction(session.answer_sdp) == "recvonly"
    await session.wait_frames(10)
    ended = await bob.next_event()
    assert ended == {
        "v": 1,
        "type": "call-ended",
        "call": call,
        "reason": "answered",
        "by": "alice",
    }
    await wait_until(lambda: door.led_states()[-1] is True, "the LED is not on during the call")

    # Alice's voice reaches the speaker: a 440 Hz tone in the WAV sink.
    def heard() -> bool:
        if not door.wav.exists():
            return False
        samples, _ = read_wav(str(door.wav))
        return len(samples) > 48_000  # one second

    await wait_until(heard, "no talkback audio reached the speaker", timeout=15)
    samples, rate = read_wav(str(door.wav))
    assert rms(samples) > 1000
    assert abs(dominant_frequency(samples[-48_000:], rate) - 440.0) < 5

    # Bob watches too, but without talkback (only the answering viewer talks).
    watcher = await bob.watch(send_audio=ToneTrack(880.0), call=call)
    await watcher.wait_frames(5)
    assert audio_direction(watcher.answer_sdp) == "inactive"

    await session.bye()
    await bob.wait_status(call=None)
    await wait_until(lambda: door.led_states()[-1] is False, "the LED stayed on after the call")
    log = await retained(mosquitto, "peercam/frontdoor/calls")
    assert b'"reason":"answered"' in log and b'"by":"alice"' in log


async def test_an_answer_that_fails_leaves_the_call_ringing_for_the_others(
    door_factory: StartDoor,
    viewer_factory: ViewerFactory,
    mosquitto: MosquittoBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """mallory's phone answers with an offer the device must refuse: bob can still answer."""
    caplog.set_level(logging.INFO, logger="peercam.calls")
    door = await door_factory()
    mallory = await viewer_factory(mosquitto, "mallory")
    bob = await viewer_factory(mosquitto, "bob")
    await bob.wait_status(state="online", call=None)
    await door.press()
    call = (await bob.next_event())["call"]
    await mallory.next_event()
    broken = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    await mallory.send({"type": "offer", "session": "mallory-broken", "sdp": broken, "call": call})
    error = await mallory.next_message("error")
    assert error["session"] == "mallory-broken", error
    assert (await bob.wait_status(call=call))["call"] == call  # still ringing

    session = await bob.watch(call=call, send_audio=ToneTrack(440.0))
    await session.wait_frames(5)
    ended = await bob.next_event()
    assert (ended["type"], ended["reason"], ended["by"]) == ("call-ended", "answered", "bob")
    assert audio_direction(session.answer_sdp) == "recvonly"  # bob talks
    assert "mallory's answer failed to connect; ringing again" in caplog.text


async def test_decline_and_missed_calls_are_logged(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(call={"ring_timeout": 1.0, "min_press_interval": 0.2})
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online")

    await door.press()
    declined = (await alice.next_event())["call"]
    await alice.send({"type": "decline", "call": declined})
    assert await alice.next_event() == {
        "v": 1,
        "type": "call-ended",
        "call": declined,
        "reason": "declined",
        "by": "alice",
    }
    await alice.wait_status(call=None)

    await asyncio.sleep(0.3)
    await door.press()
    missed = (await alice.next_event())["call"]
    assert missed != declined
    ended = await alice.next_event(timeout=5)
    assert ended == {"v": 1, "type": "call-ended", "call": missed, "reason": "missed"}
    await alice.wait_status(call=None)
    await wait_until(lambda: door.led_states()[-1] is False, "the LED still blinks")

    async def log_ready() -> bytes:
        while True:
            payload = await retained(mosquitto, "peercam/frontdoor/calls")
            if payload.count(b'"snapshot":true') == 2:
                return payload
            await asyncio.sleep(0.2)

    payload = await asyncio.wait_for(log_ready(), 10)
    calls = json.loads(payload)["calls"]
    assert [(c["call"], c["reason"]) for c in calls] == [(missed, "missed"), (declined, "declined")]

    # A decline of a call that is not ringing changes nothing.
    await alice.send({"type": "decline", "call": missed})
    await asyncio.sleep(0.3)
    assert door.daemon.calls is not None and door.daemon.calls.call is None


async def test_bouncing_button_rings_once_and_stuck_button_is_reported(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(gpio={"stuck_after": 1.0})
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online")
    for _ in range(200):  # contact bounce, faster than any finger
        door.button.drive_low()
        door.button.drive_high()
    await alice.next_event()
    await asyncio.sleep(1.0)
    assert [e["type"] for e in alice.events] == ["call"]
    assert door.daemon.calls is not None and door.daemon.calls.presses == 200

    door.button.drive_low()  # and now it stays down
    status = await alice.wait_status(
        lambda s: any("call button" in f for f in s.get("faults", [])), timeout=15
    )
    assert "stuck" in " ".join(status["faults"])
    door.button.drive_high()
    await alice.wait_status(lambda s: not any("call button" in f for f in s["faults"]))


async def test_press_during_call_can_hang_up(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(call={"press_during_call": "hangup", "min_press_interval": 0.1})
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online")
    await door.press()
    call = (await alice.next_event())["call"]
    session = await alice.watch(call=call)
    await session.wait_frames(3)
    await asyncio.sleep(0.2)
    await door.press()
    bye = await session.wait_bye()
    assert bye["reason"] == "hangup"
    await alice.wait_status(call=None, viewers=0)


async def test_door_opens_only_for_an_allowed_viewer_in_the_call(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    # door_pulse longer than the 1 s default: a relay held at least this long used the setting.
    door = await door_factory(gpio={"door_pin": DOOR, "door_pulse": 1.5, "door_openers": ["alice"]})
    alice = await viewer_factory(mosquitto, "alice")
    bob = await viewer_factory(mosquitto, "bob")
    status = await alice.wait_status(state="online")
    assert status["door"] is True

    async def refused(viewer: Any, why: str) -> None:
        await viewer.send({"type": "open"})
        error = await viewer.next_message(timeout=5)
        assert error["type"] == "error" and error["code"] == "unauthorized", error
        assert why in error["message"]

    await refused(alice, "current call")  # allowed viewer, but no call
    await door.press()
    call = (await alice.next_event())["call"]
    session = await alice.watch(call=call)
    await session.wait_frames(3)
    await refused(bob, "door_openers")  # in no list
    assert True not in door.door_states()

    await alice.send({"type": "open"})
    opened = await bob.next_event()
    while opened["type"] != "opened":
        opened = await bob.next_event()
    assert opened["by"] == "alice"
    await wait_until(
        lambda: door.door_states()[-1] is False and True in door.door_states(),
        "the relay did not pulse",
    )
    pulse = [s for s in door.factory.pin(DOOR).states]
    on = next(i for i, s in enumerate(pulse) if s.state)
    # Held for door_pulse: never less; a busy event loop may only release it later.
    assert pulse[on + 1].timestamp >= 1.45, pulse


async def test_quick_reply_plays_on_the_speaker(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory()
    alice = await viewer_factory(mosquitto, "alice")
    status = await alice.wait_status(state="online")
    assert {"id": "coming", "text": "Be right there"} in status["replies"]
    await alice.send({"type": "reply", "reply": "nonesuch"})
    error = await alice.next_message(timeout=5)
    assert error["code"] == "bad-request" and "coming" in error["message"]
    await alice.send({"type": "reply", "reply": "coming"})

    def played() -> bool:
        return door.wav.exists() and len(read_wav(str(door.wav))[0]) >= 48_000

    await wait_until(played, "the quick reply was not played")
    samples, _ = read_wav(str(door.wav))
    assert rms(samples) > 1000


async def test_sigusr1_presses_the_button_of_a_fake_hardware_daemon(
    daemon_factory: DaemonFactory, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    daemon = await daemon_factory(mosquitto, extra_args=["--fake-hardware"])
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=True)
    daemon.signal(signal.SIGUSR1)
    ring = await alice.next_event()
    assert ring["type"] == "call"
    await alice.wait_status(call=ring["call"])
    session = await alice.watch(call=ring["call"])
    await session.wait_frames(3)
    assert (await alice.next_event())["reason"] == "answered"
    assert "SIGUSR1 presses the call button" in daemon.log_text()


async def test_without_gpio_the_daemon_says_so_once_and_serves(
    daemon_factory: DaemonFactory, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    daemon = await daemon_factory(mosquitto)
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=False)
    session = await alice.watch()
    await session.wait_frames(3)
    assert daemon.log_text().count("call button disabled") == 1
    # An offer answering a call that does not ring is served as plain watching.
    stale = await alice.watch(call="no-such-call-1", hello=False)
    await stale.wait_frames(3)
    assert "offered to answer call no-such-call-1, but no call is ringing" in daemon.log_text()


async def test_talkback_with_a_microphone_is_audio_both_ways(
    door_factory: StartDoor, viewer_factory: ViewerFactory, mosquitto: MosquittoBroker
) -> None:
    door = await door_factory(audio={"source": "test-tone"})  # the device's mic: 440 Hz
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online")
    await door.press()
    call = (await alice.next_event())["call"]
    session = await alice.watch(call=call, send_audio=ToneTrack(660.0))  # alice's voice
    assert audio_direction(session.answer_sdp) == "sendrecv"
    await session.wait_frames(5)
    await session.wait_audio_frames(25)  # the visitor's side reaches alice

    def heard() -> bool:
        return door.wav.exists() and len(read_wav(str(door.wav))[0]) > 48_000

    await wait_until(heard, "alice's voice did not reach the speaker", timeout=15)
    samples, rate = read_wav(str(door.wav))
    assert abs(dominant_frequency(samples[-48_000:], rate) - 660.0) < 5
