"""Web Push, the device's half: a real daemon sends to a local push endpoint that
verifies VAPID and decrypts with the keys the test made as a browser would.

Subscriptions arrive over the protocol (``push-subscribe``); a ring sends to
each; a 410 drops one; a viewer that unsubscribes, or whom provisioning no
longer lists (revoke + export), gets no more.
"""

from __future__ import annotations

import base64
import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_proc import DaemonFactory
from tests.mosquitto import MosquittoBroker
from tests.provisioned import Site
from tests.push_service import PushService
from tests.waiting import wait_until


@pytest.fixture
def push_service() -> Iterator[PushService]:
    service = PushService().start()
    yield service
    service.stop()


def provisioned_viewers(root: Path, *viewers: str, revoke: str | None = None) -> Path:
    """viewers.txt of frontdoor's bundle, made by `peercam provision` (revoke, then export)."""
    site = Site(root)
    site.init()
    site.add_device("frontdoor")
    for viewer in viewers:
        site.add_viewer(viewer, "frontdoor")
    if revoke:
        site.provision("revoke", revoke, "frontdoor")
    site.provision("export")
    return site.bundle_dir("frontdoor") / "viewers.txt"


async def subscribe(viewer, subscription: dict) -> dict:
    await viewer.send({"type": "push-subscribe", "subscription": subscription})
    return await viewer.next_message(timeout=10)


async def test_a_ring_reaches_subscribed_browsers_and_missed_replaces_it(
    daemon_factory: DaemonFactory,
    viewer_factory,
    mosquitto: MosquittoBroker,
    push_service: PushService,
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    viewers_file = tmp_path / "viewers.txt"
    shutil.copy(provisioned_viewers(tmp_path / "site", "alice", "bob"), viewers_file)
    daemon = await daemon_factory(
        mosquitto,
        config={
            "call": {"state_dir": str(state), "ring_timeout": 2.0, "min_press_interval": 0.1},
            "notify": {"viewers_file": str(viewers_file), "push_contact": "mailto:me@door.test"},
        },
        extra_args=["--fake-hardware"],
    )
    alice = await viewer_factory(mosquitto, "alice")
    bob = await viewer_factory(mosquitto, "bob")
    status = await alice.wait_status(state="online", button=True)
    key = status["push_key"]
    assert len(base64.urlsafe_b64decode(key + "==")) == 65  # an applicationServerKey

    phone, laptop, old = (push_service.new_subscription(n) for n in ("phone", "laptop", "old"))
    for viewer, browser in ((alice, phone), (alice, old), (bob, laptop)):
        reply = await subscribe(viewer, browser.subscription())
        assert reply == {"v": 1, "type": "push-subscribed", "endpoint": browser.endpoint}
    push_service.gone.add("old")  # this browser unsubscribed: the push service says 410
    store = state / "push-subscriptions.json"
    assert len(json.loads(store.read_text())) == 3 and store.stat().st_mode & 0o777 == 0o600

    daemon.signal(signal.SIGUSR1)
    ring = await alice.next_event()
    await wait_until(
        lambda: push_service.pushes_to("phone") and push_service.pushes_to("laptop"),
        f"no push reached both browsers (problems: {push_service.problems})",
        timeout=15,
    )
    assert push_service.problems == []
    push = push_service.pushes_to("phone")[0]
    assert push.vapid_key == key and push.claims["sub"] == "mailto:me@door.test"
    assert push.headers["urgency"] == "high" and 0 < int(push.headers["ttl"]) <= 2
    assert push.headers["topic"] == ring["call"]
    message = push.message
    assert message["kind"] == "ring" and message["call"] == ring["call"]
    assert message["device"] == "frontdoor" and message["title"].startswith("Front door")
    assert message["image"].startswith("data:image/jpeg;base64,")
    thumb = base64.b64decode(message["image"].split(",", 1)[1])
    assert thumb.startswith(b"\xff\xd8") and push.size <= 4096

    # 410: the expired subscription is gone from the state folder.
    await wait_until(
        lambda: "old" not in (state / "push-subscriptions.json").read_text(),
        "the 410 subscription was not dropped",
    )
    # Nobody answers: the "missed" push replaces the ring (same Topic, same call).
    assert (await alice.next_event(timeout=10))["reason"] == "missed"
    await wait_until(lambda: len(push_service.pushes_to("phone")) >= 2, "no missed push")
    missed = push_service.pushes_to("phone")[1]
    assert missed.message["kind"] == "missed" and missed.message["call"] == ring["call"]
    assert missed.headers["topic"] == ring["call"] and missed.headers["urgency"] == "normal"

    # bob unsubscribes; alice is revoked (provisioning export rewrites viewers.txt).
    await bob.send({"type": "push-unsubscribe", "endpoint": laptop.endpoint})
    assert (await bob.next_message(timeout=10))["type"] == "push-unsubscribed"
    shutil.copy(
        provisioned_viewers(tmp_path / "site2", "alice", "bob", revoke="alice"), viewers_file
    )
    before = len(push_service.pushes)
    daemon.signal(signal.SIGUSR1)
    await alice.next_event()
    await wait_until(
        lambda: "dropped alice's subscriptions" in daemon.log_text(),
        "the revoked viewer's subscriptions were not dropped",
    )
    assert json.loads((state / "push-subscriptions.json").read_text()) == []
    assert len(push_service.pushes) == before, "no push after unsubscribe/revoke"
    # A revoked viewer cannot subscribe again.
    again = await subscribe(alice, phone.subscription())
    assert again["type"] == "error" and again["code"] == "unauthorized"


async def test_bad_subscriptions_get_clear_errors(
    daemon_factory: DaemonFactory, viewer_factory, mosquitto: MosquittoBroker
) -> None:
    await daemon_factory(mosquitto)
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online")
    good = PushService().new_subscription("x").subscription()
    cases = [
        ({"endpoint": "http://10.0.0.1/wpush/x", "keys": good["keys"]}, "https://"),
        ({"endpoint": "https://push.example/x", "keys": {"p256dh": "AAAA", "auth": "x"}}, "p256dh"),
        ({**good, "keys": {**good["keys"], "auth": "AAAA"}}, "auth"),
        ("nope", "object"),
    ]
    for subscription, needle in cases:
        reply = await subscribe(alice, subscription)
        assert reply["type"] == "error" and reply["code"] == "bad-request", reply
        assert needle in reply["message"]


async def test_an_answered_call_quietly_replaces_the_ring_on_every_phone(
    daemon_factory: DaemonFactory,
    viewer_factory,
    mosquitto: MosquittoBroker,
    push_service: PushService,
    tmp_path: Path,
) -> None:
    daemon = await daemon_factory(
        mosquitto,
        config={"call": {"state_dir": str(tmp_path / "state")}, "notify": {"snapshot_wait": 0.0}},
        extra_args=["--fake-hardware"],
    )
    alice = await viewer_factory(mosquitto, "alice")
    await alice.wait_status(state="online", button=True)
    phone = push_service.new_subscription("bobs-phone")
    assert (await subscribe(alice, phone.subscription()))["type"] == "push-subscribed"
    daemon.signal(signal.SIGUSR1)
    ring = await alice.next_event()
    await wait_until(lambda: push_service.pushes_to("bobs-phone"), "the ring's push")
    session = await alice.watch(call=ring["call"])
    await session.wait_frames(3)
    assert (await alice.next_event())["reason"] == "answered"
    await wait_until(lambda: len(push_service.pushes_to("bobs-phone")) >= 2, "the answered push")
    first, second = push_service.pushes_to("bobs-phone")[:2]
    assert first.message["kind"] == "ring" and "image" not in first.message  # snapshot_wait 0
    assert second.message["kind"] == "ended" and second.message["call"] == ring["call"]
    assert second.message["title"] == "Front door: answered"
    assert second.message["body"].endswith("was answered by alice")
    assert second.headers["urgency"] == "low" and second.headers["topic"] == ring["call"]
    assert push_service.problems == []
