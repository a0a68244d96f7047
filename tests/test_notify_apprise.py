"""Apprise notifications from a real daemon (``--fake-hardware``, SIGUSR1 = a press) to a
local endpoint (Apprise's ``json://``), and what a dead or hanging service must not delay.

Delays are checked by causality, not by clocks: the hanging endpoint holds the
device's request unanswered while the test sees the next ring and a viewer's
video; only then does it let the request go.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Iterator

import pytest

from tests.daemon_proc import DaemonFactory
from tests.http_sink import HttpSink, dead_port
from tests.mosquitto import MosquittoBroker
from tests.waiting import wait_until

ViewerFactory = object  # conftest's factory (typed loosely here)


@pytest.fixture
def sink() -> Iterator[HttpSink]:
    server = HttpSink().start()
    yield server
    server.stop()


def notify_config(urls: list[str], **extra: object) -> dict[str, object]:
    return {
        "notify": {
            "urls": urls,
            "dashboard_url": "https://door.example/",
            "web_push": False,
            **extra,
        },
        "call": {"min_press_interval": 0.1},
    }


async def test_a_press_sends_one_notification_with_the_snapshot(
    daemon_factory: DaemonFactory, viewer_factory, mosquitto: MosquittoBroker, sink: HttpSink
) -> None:
    url = sink.url("json")
    daemon = await daemon_factory(
        mosquitto, config=notify_config([url]), extra_args=["--fake-hardware"]
    )
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=True)
    daemon.signal(signal.SIGUSR1)
    ring = await alice.next_event()
    assert ring["type"] == "call"
    await wait_until(lambda: sink.requests, "no notification reached the endpoint", timeout=15)
    session = await alice.watch(call=ring["call"])
    await session.wait_frames(3)
    assert (await alice.next_event())["reason"] == "answered"

    assert len(sink.requests) == 1, "one press, one notification"
    body = json.loads(sink.requests[0].body)
    assert body["title"] == "Front door: someone is at the door"
    assert f"https://door.example/?call={ring['call']}#/device/frontdoor" in body["message"]
    (attachment,) = body["attachments"]
    jpeg = base64.b64decode(attachment["base64"])
    assert attachment["mimetype"] == "image/jpeg" and jpeg.startswith(b"\xff\xd8")
    assert len(jpeg) > 1000
    assert "notify: ring call" in daemon.log_text()


async def test_a_dead_service_is_logged_once_and_delays_nothing(
    daemon_factory: DaemonFactory, viewer_factory, mosquitto: MosquittoBroker, sink: HttpSink
) -> None:
    dead = f"json://127.0.0.1:{dead_port()}/notify"
    daemon = await daemon_factory(
        mosquitto,
        config=notify_config([dead, sink.url("json")], snapshot_wait=0.0),
        extra_args=["--fake-hardware"],
    )
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=True)
    for n in (1, 2):
        daemon.signal(signal.SIGUSR1)
        ring = await alice.next_event()
        assert ring["type"] == "call"
        session = await alice.watch(call=ring["call"])
        await session.wait_frames(3)
        assert (await alice.next_event())["reason"] == "answered"
        # The working service behind the dead one still gets every ring.
        await wait_until(lambda n=n: len(sink.requests) >= n, f"ring {n} not delivered")
        await session.bye()
        await alice.wait_status(call=None)
    log = daemon.log_text()
    assert log.count(f"{dead}: ring call") == 1, "a failure streak is logged once"
    assert "further failures are not logged until it works again" in log


async def test_a_hanging_service_delays_neither_the_next_ring_nor_video(
    daemon_factory: DaemonFactory, viewer_factory, mosquitto: MosquittoBroker, sink: HttpSink
) -> None:
    sink.hold()  # every request waits unanswered until release()
    daemon = await daemon_factory(
        mosquitto,
        config=notify_config([sink.url("json")], timeout=60.0, snapshot_wait=0.0)
        | {"call": {"min_press_interval": 0.1, "ring_timeout": 1.0}},
        extra_args=["--fake-hardware"],
    )
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=True)
    daemon.signal(signal.SIGUSR1)
    first = await alice.next_event()
    await wait_until(lambda: sink.waiting == 1, "the first ring's request did not arrive")
    assert (await alice.next_event(timeout=10))["reason"] == "missed"
    # The service still holds the first request: the device's sender is stuck in it.
    daemon.signal(signal.SIGUSR1)
    second = await alice.next_event()
    assert second["type"] == "call" and second["call"] != first["call"]
    session = await alice.watch(call=second["call"])
    await session.wait_frames(5)
    assert (await alice.next_event())["reason"] == "answered"
    assert sink.waiting == 1 and len(sink.requests) == 1, "everything above happened mid-hang"
    sink.release()
    # Then the queued notifications (missed, second ring) go out in order.
    await wait_until(lambda: len(sink.requests) >= 3, "the queued notifications never left")
    titles = [json.loads(r.body)["title"] for r in sink.requests[:3]]
    assert titles == [
        "Front door: someone is at the door",
        "Front door: missed call",
        "Front door: someone is at the door",
    ]
    assert "missed" in daemon.log_text()
