"""The call state machine on its own: every transition, with recording hooks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field

import pytest

from peercam.call_log import CallLog
from peercam.calls import CallHooks, CallManager, CallState
from peercam.config import CallConfig
from peercam.protocol import SESSION_ID_RE, Topics


@dataclass
class Recorder:
    events: list[dict[str, object]] = field(default_factory=list)
    published: dict[str, bytes] = field(default_factory=dict)
    leds: list[CallState] = field(default_factory=list)
    holds: int = 0
    status_changes: int = 0
    hung_up: list[tuple[str, str]] = field(default_factory=list)
    jpeg: bytes | None = b"\xff\xd8fake-jpeg\xff\xd9"

    async def publish_event(self, message: dict[str, object]) -> bool:
        self.events.append(message)
        return True

    async def publish(self, topic: str, payload: bytes, retain: bool) -> bool:
        assert retain
        self.published[topic] = payload
        return True

    def status_changed(self) -> None:
        self.status_changes += 1

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        self.holds -= 1

    async def snapshot(self) -> bytes | None:
        return self.jpeg

    async def hang_up(self, viewer: str, session: str) -> None:
        self.hung_up.append((viewer, session))

    def types(self) -> list[tuple[object, object]]:
        return [(e["type"], e.get("reason")) for e in self.events]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(rec: Recorder, clock: FakeClock | None = None, state_dir: str = "", **cfg) -> CallManager:
    topics = Topics("peercam", "door")
    hooks = CallHooks(
        publish_event=rec.publish_event,
        status_changed=rec.status_changed,
        indicate=rec.leds.append,
        hold_media=rec.hold,
        release_media=rec.release,
        snapshot=rec.snapshot,
        hang_up=rec.hang_up,
    )
    log = CallLog(topics, rec.publish, keep=cfg.pop("history", 10), state_dir=state_dir)
    return CallManager(CallConfig(**cfg), hooks, log, clock=clock or FakeClock())


def ring_now(calls: CallManager) -> str:
    """Press the button; the id of the call that now rings."""
    calls.press()
    assert calls.call is not None
    return calls.call


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_press_rings_once_and_holds_the_camera() -> None:
    rec = Recorder()
    clock = FakeClock()
    calls = make(rec, clock)
    calls.press()
    await settle()
    assert calls.state is CallState.RINGING
    assert calls.call is not None and SESSION_ID_RE.match(calls.call)
    assert rec.events[0]["type"] == "call"
    assert rec.events[0]["call"] == calls.call
    assert rec.events[0]["expires_in"] == 30.0
    assert rec.holds == 1
    assert rec.leds == [CallState.RINGING]
    first = calls.call
    clock.now += 5  # past the bounce window: a second press while ringing
    calls.press()
    await settle()
    assert calls.call == first
    assert [e["type"] for e in rec.events] == ["call"]
    await calls.close()


async def test_answer_by_first_offer_then_idle_when_its_session_ends() -> None:
    rec = Recorder()
    calls = make(rec)
    call = ring_now(calls)
    assert calls.claim("alice", "sess-alice-1", call)
    assert not calls.claim("bob", "sess-bob-0001", call)  # too late
    assert calls.claim("alice", "sess-alice-1", call)  # the same session re-offering
    await settle()
    assert calls.state is CallState.RINGING  # answered once alice's session connects
    assert rec.types() == [("call", None)]
    calls.connected("bob", "sess-bob-0001")  # bob only watches
    assert calls.state is CallState.RINGING
    calls.connected("alice", "sess-alice-1")
    assert calls.claim("alice", "sess-alice-1", call)  # still hers after connecting
    await settle()
    assert calls.state is CallState.ANSWERED
    assert rec.types() == [("call", None), ("call-ended", "answered")]
    assert rec.events[1]["by"] == "alice"
    assert rec.leds == [CallState.RINGING, CallState.ANSWERED]
    assert calls.is_answering("alice") and not calls.is_answering("bob")
    calls.session_ended("bob", "sess-bob-0001")  # someone else leaving changes nothing
    assert calls.state is CallState.ANSWERED
    calls.session_ended("alice", "sess-alice-1")
    assert calls.state is CallState.IDLE and calls.call is None
    assert rec.holds == 0
    assert rec.leds[-1] is CallState.IDLE
    await calls.close()


async def test_an_answer_that_fails_before_connecting_rings_again_until_the_deadline() -> None:
    """A refused offer or a phone that never connects must not swallow the visitor."""
    rec = Recorder()
    calls = make(rec, ring_timeout=0.6)
    call = ring_now(calls)
    assert calls.claim("alice", "sess-alice-1", call)
    calls.decline("bob", call)  # alice is answering: bob's decline does not end it
    assert calls.state is CallState.RINGING
    calls.session_ended("alice", "sess-alice-1")  # her answer failed
    assert calls.state is CallState.RINGING and calls.call == call
    assert calls.claim("bob", "sess-bob-0001", call)  # bob may answer now
    calls.connected("bob", "sess-bob-0001")
    await settle()
    assert rec.types() == [("call", None), ("call-ended", "answered")]
    assert rec.events[-1]["by"] == "bob"
    assert rec.leds == [CallState.RINGING, CallState.ANSWERED]
    await calls.close()


async def test_a_failed_answer_keeps_the_original_deadline() -> None:
    rec = Recorder()
    calls = make(rec, ring_timeout=0.2)
    call = ring_now(calls)
    assert calls.claim("alice", "sess-alice-1", call)
    await asyncio.sleep(0.3)  # past the deadline while alice connects: not missed yet
    assert calls.state is CallState.RINGING
    calls.session_ended("alice", "sess-alice-1")
    await settle()
    assert calls.state is CallState.IDLE
    assert rec.types() == [("call", None), ("call-ended", "missed")]

    calls2 = make(Recorder(), ring_timeout=0.3)
    assert calls2.claim("alice", "sess-alice-1", ring_now(calls2))
    calls2.session_ended("alice", "sess-alice-1")  # failed at once: rings until 0.3 s
    assert calls2.state is CallState.RINGING
    await asyncio.sleep(0.5)
    assert calls2.state is CallState.IDLE
    await calls.close()
    await calls2.close()


async def test_offer_with_a_stale_call_is_not_an_answer() -> None:
    rec = Recorder()
    calls = make(rec)
    assert not calls.claim("alice", "sess-alice-1", "not-ringing-123")
    calls.press()
    assert not calls.claim("alice", "sess-alice-1", "another-call-123")
    assert calls.state is CallState.RINGING
    await calls.close()


async def test_decline_ends_ringing_everywhere() -> None:
    rec = Recorder()
    calls = make(rec)
    call = ring_now(calls)
    calls.decline("bob", "wrong-call-id-1")
    assert calls.state is CallState.RINGING
    calls.decline("bob", call)
    await settle()
    assert calls.state is CallState.IDLE
    assert rec.types()[-1] == ("call-ended", "declined")
    assert rec.events[-1]["by"] == "bob"
    assert rec.holds == 0
    await calls.close()


async def test_missed_after_ring_timeout() -> None:
    rec = Recorder()
    calls = make(rec, ring_timeout=0.05)
    calls.press()
    call = calls.call
    await asyncio.sleep(0.2)
    assert calls.state is CallState.IDLE
    assert rec.types() == [("call", None), ("call-ended", "missed")]
    assert rec.events[-1]["call"] == call
    log = json.loads(rec.published["peercam/door/calls"])
    assert log["calls"][0] == {
        "call": call,
        "at": pytest.approx(log["calls"][0]["at"]),
        "reason": "missed",
        "snapshot": True,
    }
    assert rec.published[f"peercam/door/snapshot/{call}"] == rec.jpeg
    await calls.close()


async def test_bouncing_button_rings_once() -> None:
    rec = Recorder()
    clock = FakeClock()
    calls = make(rec, clock, min_press_interval=2.0)
    for _ in range(500):  # a contact bouncing for 50 ms
        calls.press()
        clock.now += 0.0001
    await settle()
    assert calls.presses == 500
    assert [e["type"] for e in rec.events] == ["call"]
    calls.decline("x", calls.call or "")
    clock.now += 0.5  # still inside the window: ignored, no new call
    calls.press()
    assert calls.state is CallState.IDLE
    clock.now += 2.0
    calls.press()
    assert calls.state is CallState.RINGING
    await calls.close()


@pytest.mark.parametrize("mode", ["ignore", "hangup"])
async def test_press_during_call(mode: str) -> None:
    rec = Recorder()
    clock = FakeClock()
    calls = make(rec, clock, press_during_call=mode)
    calls.press()
    assert calls.claim("alice", "sess-alice-1", calls.call or "")
    calls.connected("alice", "sess-alice-1")
    clock.now += 10
    calls.press()
    await settle()
    if mode == "hangup":
        assert rec.hung_up == [("alice", "sess-alice-1")]
        assert calls.state is CallState.IDLE
    else:
        assert rec.hung_up == []
        assert calls.state is CallState.ANSWERED
    await calls.close()


async def test_shutdown_while_ringing_cancels_the_call() -> None:
    rec = Recorder()
    calls = make(rec)
    calls.press()
    await calls.close()
    assert rec.types()[-1] == ("call-ended", "cancelled")
    assert rec.holds == 0


async def test_log_keeps_the_last_n_and_clears_old_snapshots(tmp_path) -> None:
    rec = Recorder()
    clock = FakeClock()
    calls = make(rec, clock, history=2, state_dir=str(tmp_path))
    ids = []
    for _ in range(3):
        calls.press()
        ids.append(calls.call)
        await settle()
        calls.decline("bob", calls.call or "")
        await settle()
        clock.now += 10
    log = json.loads(rec.published["peercam/door/calls"])
    assert [c["call"] for c in log["calls"]] == [ids[2], ids[1]]
    assert rec.published[f"peercam/door/snapshot/{ids[0]}"] == b""  # cleared at the broker
    assert not (tmp_path / f"{ids[0]}.jpg").exists()
    assert (tmp_path / f"{ids[2]}.jpg").read_bytes() == rec.jpeg
    await calls.close()
    # A restarted daemon reads the same log back and republishes it.
    rec2 = Recorder()
    again = make(rec2, state_dir=str(tmp_path), history=2)
    assert [r.call for r in again.log.records] == [ids[2], ids[1]]
    await again.log.republish_all()
    assert json.loads(rec2.published["peercam/door/calls"]) == log
    assert rec2.published[f"peercam/door/snapshot/{ids[1]}"] == rec.jpeg


async def test_unreadable_state_file_starts_a_new_log(tmp_path, caplog) -> None:
    (tmp_path / "calls.json").write_text("{not json")
    calls = make(Recorder(), state_dir=str(tmp_path))
    assert calls.log.records == []
    assert "unreadable" in caplog.text
