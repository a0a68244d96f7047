"""Faults a deployed door camera meets, against the real daemon and a real Mosquitto.

The broker missing at start, restarting mid-stream, losing its retained
messages; viewers vanishing without a word (during the handshake, after it,
with and without their MQTT last will); SIGTERM while a session is live and
while another is still negotiating.  Every wait is bounded; none asserts a
speed.  Where a timeout is the mechanism under test (connect timeout,
consent expiry) the wait is that timeout plus a generous margin.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

import aiomqtt
import pytest

from tests.daemon_proc import DaemonFactory, DaemonProcess, attach_log
from tests.daemon_resources import REPORTING, idle_baseline, next_report, settled
from tests.mosquitto import MosquittoBroker
from tests.viewer import Viewer, ViewerFactory, create_offer, new_session_id
from tests.viewer_proc import ViewerProcess

pytestmark = pytest.mark.timeout(120)

DEVICE = "frontdoor"
WAIT = 15.0
FRAMES = 20


async def wait_log(daemon: DaemonProcess, text: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while text not in daemon.log_text():
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the daemon log:\n{daemon.log_text()}")
        await asyncio.sleep(0.05)


async def retained_status(broker: MosquittoBroker, timeout: float = 3.0) -> dict | None:
    """What a viewer arriving now gets on the status topic (None: nothing retained)."""
    async with aiomqtt.Client(broker.host, broker.port, identifier=new_session_id()) as client:
        await client.subscribe(f"peercam/{DEVICE}/status", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                async for message in client.messages:
                    if message.retain and message.payload:
                        return json.loads(bytes(message.payload))  # type: ignore[arg-type]
    return None


# --- the broker ---------------------------------------------------------------------------


async def test_broker_down_at_start_the_daemon_waits_and_comes_online_later(
    mosquitto_factory, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    broker: MosquittoBroker = mosquitto_factory()
    broker.stop()  # keeps its port: nothing listens there now
    daemon = await daemon_factory(broker, device=DEVICE, wait=False)
    await wait_log(daemon, "cannot reach MQTT broker")
    assert daemon.running
    broker.start()
    status = await daemon.wait_online(timeout=40)  # reconnect backoff is at most ~36 s
    assert status["viewers"] == 0
    viewer = await viewer_factory(broker, "alice", device=DEVICE)
    watch = await viewer.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    await watch.bye()
    # One readable line per distinct problem, not one per retry.
    assert daemon.log_text().count("cannot reach MQTT broker") <= 3, daemon.log_text()


async def test_broker_restart_media_flows_and_status_tells_the_truth_afterwards(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """Two viewers watch; the broker goes down; one viewer leaves while it is down.

    The other keeps decoding peer to peer; when the broker is back (without
    persistence: every retained message is gone), the daemon's republished
    status counts one viewer, not two, and a new viewer can watch.
    """
    daemon = await daemon_factory(mosquitto, device=DEVICE)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    alices, bobs = await asyncio.gather(alice.watch(timeout=WAIT), bob.watch(timeout=WAIT))
    await asyncio.gather(alices.wait_frames(FRAMES, WAIT), bobs.wait_frames(FRAMES, WAIT))
    await alice.wait_status(viewers=2, timeout=WAIT)

    mosquitto.stop()
    await bobs.close()  # no bye can reach the device: DTLS close_notify is all it gets
    await wait_log(daemon, f"bob/{bobs.id[:12]}: ended")  # the device noticed
    await alices.wait_more_frames(FRAMES, WAIT)  # P2P media does not need the broker
    mosquitto.start()

    status = await daemon.wait_status(lambda s: s.get("state") == "online", timeout=40)
    assert status["viewers"] == 1, status
    retained = await retained_status(mosquitto)
    assert retained is not None and retained["viewers"] == 1, retained
    carol = await viewer_factory(mosquitto, "carol", device=DEVICE)
    carols = await carol.watch(timeout=WAIT)
    await asyncio.gather(carols.wait_frames(FRAMES, WAIT), alices.wait_more_frames(FRAMES, WAIT))
    await carol.wait_status(viewers=2, timeout=WAIT)
    await alice.reconnect()
    await alices.bye()
    await carols.bye()
    await carol.wait_status(viewers=0, timeout=WAIT)


async def test_a_retained_message_left_in_an_inbox_is_not_replayed(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """A viewer publishes its hello with the retain flag: the broker keeps it in ``in/mallory``.

    Every (re)subscription of the device would get it again; the device must
    ignore it (and say so), while the same viewer's live messages still work.
    """
    planted = new_session_id()
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="mallory") as client:
        payload = json.dumps({"v": 1, "type": "hello", "session": planted})
        await client.publish(f"peercam/{DEVICE}/in/mallory", payload, qos=1, retain=True)
    daemon = await daemon_factory(mosquitto, device=DEVICE)
    await wait_log(daemon, f"ignored a retained message on peercam/{DEVICE}/in/mallory")
    mallory = await viewer_factory(mosquitto, "mallory", device=DEVICE)
    watch = await mallory.watch(timeout=WAIT)  # a live hello and offer are served
    await watch.wait_frames(FRAMES, WAIT)
    await watch.bye()
    assert planted[:12] not in daemon.log_text()  # the planted session never started


async def test_a_retained_status_the_broker_dropped_is_published_again(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory
) -> None:
    """Someone (an admin, a broker losing its store) clears the retained status: it comes back."""
    daemon = await daemon_factory(
        mosquitto, device=DEVICE, config={"mqtt": {"status_refresh": 1.0}}
    )
    assert (await retained_status(mosquitto) or {}).get("state") == "online"
    async with aiomqtt.Client(mosquitto.host, mosquitto.port, identifier="admin-clear") as admin:
        await admin.publish(f"peercam/{DEVICE}/status", b"", qos=1, retain=True)
    # Bounded: the daemon republishes within status_refresh (1 s here).
    deadline = time.monotonic() + WAIT
    while (status := await retained_status(mosquitto, timeout=1.0)) is None:
        assert time.monotonic() < deadline, f"status never came back:\n{daemon.log_text()}"
    assert status["state"] == "online" and status["viewers"] == 0, status


async def test_a_frozen_broker_is_noticed_by_keepalive_and_rejoined_when_it_thaws(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """SIGSTOP on the broker: the TCP connection stays up but nothing answers (a paused VM,
    a partition).  The daemon's MQTT keepalive notices; media keeps flowing; after SIGCONT
    the daemon is back online with a correct status.
    """
    daemon = await daemon_factory(mosquitto, device=DEVICE, config={"mqtt": {"keepalive": 5}})
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE, keepalive=60)
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    assert mosquitto.proc is not None
    mosquitto.proc.send_signal(signal.SIGSTOP)
    try:
        await wait_log(daemon, "lost the broker", timeout=30)
        await watch.wait_more_frames(FRAMES, WAIT)
    finally:
        mosquitto.proc.send_signal(signal.SIGCONT)
    deadline = time.monotonic() + 60
    while daemon.log_text().count("connected to mqtt") < 2:
        assert time.monotonic() < deadline, daemon.log_text()
        await asyncio.sleep(0.1)
    status = await daemon.wait_status(lambda s: s.get("state") == "online", WAIT)
    assert status["viewers"] == 1, status
    await watch.wait_more_frames(FRAMES, WAIT)
    assert watch.device_bye is None
    await watch.bye()
    await daemon.wait_status(lambda s: s.get("viewers") == 0, WAIT)


async def test_sigterm_while_the_broker_is_down_exits_0_at_once(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, device=DEVICE)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    mosquitto.kill()
    await wait_log(daemon, "lost the broker")
    assert await daemon.terminate(timeout=WAIT) == 0
    # Its side of the peer connection closed: the viewer sees the end without MQTT.
    await watch.wait_connection_state("closed", "failed", timeout=WAIT)
    daemon.assert_no_traceback()


# --- viewers vanishing ----------------------------------------------------------------------


async def test_a_viewer_vanishing_mid_handshake_is_failed_at_connect_timeout_and_freed(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """alice offers, gets the answer and disappears (pc closed, no bye, MQTT still up)."""
    daemon = await daemon_factory(
        mosquitto,
        device=DEVICE,
        config={"webrtc": {"max_viewers": 1, "connect_timeout": 3.0}},
    )
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    pc = await create_offer([])
    sid = new_session_id()
    await alice.send({"type": "offer", "session": sid, "sdp": pc.localDescription.sdp})
    await alice.expect_reply(sid, "answer", WAIT)
    await pc.close()
    await alice.wait_status(viewers=1, timeout=WAIT)
    bye = await alice.expect_reply(sid, "bye", 3.0 + WAIT)
    assert bye["reason"] == "failed", bye
    await alice.wait_status(viewers=0, timeout=WAIT)
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)  # the only slot is free again
    watch = await bob.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    await watch.bye()
    daemon.assert_no_traceback()


async def test_a_killed_viewer_process_is_closed_at_once_by_its_last_will(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """SIGKILL: the broker sees the socket close and publishes the will (``bye *``) at once."""
    daemon = await daemon_factory(mosquitto, device=DEVICE, config={"webrtc": {"max_viewers": 1}})
    proc = ViewerProcess(mosquitto.url, DEVICE, "alice", tmp_path)
    attach_log(request.node, "viewer process log", proc.log_text)
    try:
        await proc.start()
        await daemon.wait_status(lambda s: s.get("viewers") == 1, WAIT)
        proc.kill()
        # Well inside the ~30 s consent expiry: the will, not ICE, closed it.
        await daemon.wait_status(lambda s: s.get("viewers") == 0, 10.0)
    finally:
        proc.kill()
    assert "alice is gone (last will or bye *)" in daemon.log_text()
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    watch = await bob.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    await watch.bye()


@pytest.mark.slow
async def test_a_frozen_viewer_is_closed_when_ice_consent_expires_and_its_slot_freed(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """SIGSTOP: the viewer's network is as good as cut, and its MQTT will does not fire.

    (Its keepalive is 10 minutes, so the broker keeps its connection.) Only
    ICE consent freshness (RFC 7675; aioice: 6 missed checks 5 s apart,
    about 30 s) can notice; the session is then failed and its slot freed.
    """
    daemon = await daemon_factory(
        mosquitto, device=DEVICE, config={"webrtc": {"max_viewers": 1}, **REPORTING}
    )
    proc = ViewerProcess(mosquitto.url, DEVICE, "alice", tmp_path, keepalive=600)
    attach_log(request.node, "viewer process log", proc.log_text)
    try:
        await proc.start()
        await daemon.wait_status(lambda s: s.get("viewers") == 1, WAIT)
        proc.signal(signal.SIGSTOP)
        await daemon.wait_status(lambda s: s.get("viewers") == 0, 60.0)
        await next_report(daemon, lambda r: r.peer_connections == 0 and r.sessions == 0)
    finally:
        proc.kill()
    assert "ICE consent expired" in daemon.log_text(), daemon.log_text()
    assert "last will" not in daemon.log_text()
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    watch = await bob.watch(timeout=WAIT)
    await watch.wait_frames(FRAMES, WAIT)
    await watch.bye()


# --- SIGTERM ------------------------------------------------------------------------------------


async def test_sigterm_with_a_live_session_and_a_handshake_says_bye_to_both_then_offline(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(mosquitto, device=DEVICE)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    watching = await alice.watch(timeout=WAIT)
    await watching.wait_frames(FRAMES, WAIT)
    # bob is mid-handshake: answered, but his ICE never starts (no remote description).
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    pc = await create_offer([])
    try:
        sid = new_session_id()
        await bob.send({"type": "offer", "session": sid, "sdp": pc.localDescription.sdp})
        await bob.expect_reply(sid, "answer", WAIT)
        await alice.wait_status(viewers=2, timeout=WAIT)

        assert await daemon.terminate() == 0
        assert (await watching.wait_bye(WAIT))["reason"] == "shutdown"
        assert (await bob.expect_reply(sid, "bye", WAIT))["reason"] == "shutdown"
        status = await alice.wait_status(state="offline", timeout=WAIT)
        assert status["viewers"] == 0
    finally:
        await pc.close()
    daemon.assert_no_traceback()


@pytest.mark.parametrize("attempt", [1, 2])
async def test_sigterm_racing_an_offer_exits_0_and_never_answers_after_bye(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    attempt: int,
) -> None:
    daemon = await daemon_factory(mosquitto, device=DEVICE)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    pc = await create_offer([])
    try:
        sid = new_session_id()
        await alice.send({"type": "offer", "session": sid, "sdp": pc.localDescription.sdp})
        if attempt == 2:
            await alice.wait_status(viewers=1, timeout=WAIT)  # the offer is being handled
        assert await daemon.terminate() == 0
        await alice.wait_status(state="offline", timeout=WAIT)
    finally:
        await pc.close()
    replies = [m["type"] for m in alice.pending() if m.get("session") == sid]
    assert replies in ([], ["bye"], ["answer", "bye"]), replies
    daemon.assert_no_traceback()


# --- bursts of viewers ----------------------------------------------------------------------------


async def _join_and_leave(broker: MosquittoBroker, viewer_id: str, how: str) -> str:
    """One viewer: watch a few frames (or be refused), then leave ``how``; returns the outcome."""
    viewer = Viewer(broker.url, device=DEVICE, viewer_id=viewer_id)
    await viewer.connect()
    try:
        try:
            watch = await viewer.watch(timeout=WAIT)
        except Exception as exc:  # SignalingError busy, or the daemon's other refusals
            error = getattr(exc, "error", None)
            return f"error:{(error or {}).get('code', type(exc).__name__)}"
        await watch.wait_frames(3, WAIT)
        if how == "bye":
            await watch.bye()
        elif how == "will":
            await viewer.drop()  # MQTT cut: the will says bye *
            await watch.close()
        else:  # "quiet": the pc closes (DTLS close_notify), no bye
            await watch.close()
        return "watched"
    finally:
        await viewer.close(bye=False)


async def test_a_hundred_viewers_in_bursts_get_busy_right_and_leave_nothing_behind(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory
) -> None:
    """Five bursts of 20 viewers against max_viewers 3: never more than 3 sessions; no leak."""
    daemon = await daemon_factory(
        mosquitto, device=DEVICE, config={"webrtc": {"max_viewers": 3}, **REPORTING}
    )
    # Warm up (lazy imports, first camera start), then take the baseline.
    assert await _join_and_leave(mosquitto, "warmup", "bye") == "watched"
    baseline = await idle_baseline(daemon)

    outcomes: list[str] = []
    async with daemon.watch_status() as statuses:
        for burst in range(5):
            hows = ("bye", "will", "quiet")
            outcomes += await asyncio.gather(
                *(_join_and_leave(mosquitto, f"b{burst}v{i}", hows[i % 3]) for i in range(20))
            )
        await statuses.wait_for(lambda s: s.get("viewers") == 0, WAIT)
        counts = [s.get("viewers") for s in statuses.statuses]
    assert max(c for c in counts if isinstance(c, int)) <= 3, counts
    assert outcomes.count("watched") >= 3, outcomes  # the first burst at least filled up
    refused = [o for o in outcomes if o != "watched"]
    assert set(refused) <= {"error:busy"}, refused
    after = await settled(daemon, baseline)
    # No slot leaked: a latecomer watches at once.
    assert await _join_and_leave(mosquitto, "latecomer", "bye") == "watched"
    assert daemon.running
    daemon.assert_no_traceback()
    print(f"{outcomes.count('watched')} watched, {len(refused)} busy")
    print(f"baseline {baseline.line()}\nafter    {after.line()}")
