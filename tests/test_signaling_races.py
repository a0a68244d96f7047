"""Signaling races and resource bounds found in review, each pinned by a test.

Real aiortc sessions, a recording fake link (``tests.signaling_harness``); a
"slow broker" is a publish that waits for an event, which makes each
interleaving deterministic.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import aioice.ice
import pytest
from aiortc import RTCIceServer

from peercam.config import WebRtcConfig
from peercam.protocol import ErrorCode, IceCandidate, ProtocolError
from peercam.session import MAX_REMOTE_CANDIDATES
from peercam.turn import mint
from tests.coturn import CoturnNotInstalled, LocalCoturn
from tests.signaling_harness import Harness, connected_viewer, inbox_tasks
from tests.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

TURN_SECRET = "races-secret"


async def test_replacing_a_viewers_oldest_session_never_exceeds_max_viewers() -> None:
    """alice (at her per-viewer limit) offers again while bob offers: one of them must wait.

    The slot freed by replacing alice's oldest session belongs to alice's new
    offer; bob must not take it while alice's ``bye replaced`` is in flight.
    """
    gate = asyncio.Event()
    h = Harness(WebRtcConfig(max_viewers=2, max_sessions_per_viewer=2))
    h.hold.append(
        (lambda viewer, m: viewer == "alice" and m.get("type") == "bye", gate.wait)  # slow bye
    )
    signaling = h.start()
    try:
        for sid in ("alice-one1", "alice-two2"):
            await h.offer("alice", sid)
            assert (await h.reply("alice", sid))["type"] == "answer"
        await h.offer("alice", "alice-three")
        await h.reply("alice", types=("bye",))  # alice's oldest is being replaced...
        await h.offer("bob", "bob-one111")  # ...when bob offers
        bob = await h.reply("bob", "bob-one111")
        gate.set()
        alice = await h.reply("alice", "alice-three")
        assert len(signaling.sessions) <= 2, list(signaling.sessions)
        assert alice["type"] == "answer", alice
        assert bob["type"] == "error" and bob["code"] == "busy", bob
    finally:
        gate.set()
        await h.close()


async def test_shutdown_never_sends_an_answer_after_its_bye() -> None:
    """SIGTERM while an offer is being answered: the viewer gets bye, and no answer after it."""
    h = Harness()
    h.hold.append((lambda viewer, m: m.get("type") == "bye", lambda: asyncio.sleep(0.3)))
    signaling = h.start()
    try:
        sdp = await h.offer_sdp()
        h.send("alice", {"type": "offer", "session": "alice-one1", "sdp": sdp})
        for _ in range(100):  # the slot is taken at once, the answer takes a moment
            if signaling.sessions:
                break
            await asyncio.sleep(0)
        assert signaling.sessions and not h.to("alice"), h.to("alice")
        await signaling.close()
        types = [m["type"] for m in h.to("alice")]
        assert "bye" in types, types
        assert "answer" not in types[types.index("bye") :], types
    finally:
        await h.close()


async def test_no_inbox_task_lingers_once_its_messages_are_handled() -> None:
    """A hundred viewers say hello and leave: no task per departed viewer is left behind."""
    h = Harness(WebRtcConfig(max_viewers=4))
    h.start()
    try:
        for i in range(100):
            h.send(f"viewer{i}", {"type": "hello", "session": f"session-{i:04d}"})
        for i in range(100):
            await h.reply(f"viewer{i}", types=("welcome",))
        for _ in range(50):
            if not inbox_tasks():
                break
            await asyncio.sleep(0.01)
        assert inbox_tasks() == []
    finally:
        await h.close()


async def test_a_session_takes_a_bounded_number_of_remote_candidates() -> None:
    """Trickled candidates are stored and checked by aioice: a viewer may not add them forever."""
    h = Harness()
    signaling = h.start()
    try:
        await h.offer("alice", "alice-one1")
        assert (await h.reply("alice", "alice-one1"))["type"] == "answer"
        session = signaling.sessions[("alice", "alice-one1")]
        in_offer = session.remote_candidates
        assert in_offer >= 1  # the offer's own loopback candidate
        refused = 0
        for i in range(MAX_REMOTE_CANDIDATES + 50):
            line = f"candidate:{i} 1 udp 2130706431 127.0.{i // 200}.{i % 200 + 1} 9 typ host"
            try:
                await session.add_candidate(IceCandidate(line, "0", 0))
            except ProtocolError as exc:
                assert exc.code is ErrorCode.BAD_REQUEST and "candidates" in exc.message
                refused += 1
        assert refused == 50 + in_offer
        assert session.remote_candidates <= MAX_REMOTE_CANDIDATES
    finally:
        await h.close()


async def test_an_offer_with_thousands_of_candidates_is_refused() -> None:
    h = Harness()
    signaling = h.start()
    try:
        sdp = await h.offer_sdp()
        extra = "".join(
            f"a=candidate:{i} 1 udp 2130706431 127.0.{i // 200}.{i % 200 + 1} 9 typ host\r\n"
            for i in range(800)
        )
        h.send("alice", {"type": "offer", "session": "alice-one1", "sdp": sdp + extra})
        reply = await h.reply("alice", "alice-one1")
        assert reply["type"] == "error" and reply["code"] == "bad-request", reply
        assert "candidates" in reply["message"], reply
        assert not signaling.sessions
        # ... and the next good offer works.
        await h.offer("alice", "alice-two2")
        assert (await h.reply("alice", "alice-two2"))["type"] == "answer"
    finally:
        await h.close()


# --- the total pending-handshake limit (new) ------------------------------------------------


async def test_offers_beyond_the_handshake_limit_are_busy_until_one_settles() -> None:
    """At most ``max_handshakes`` sessions negotiate at once, across all viewers."""
    h = Harness(WebRtcConfig(max_viewers=8, max_handshakes=2, connect_timeout=60))
    signaling = h.start()
    try:
        for viewer in ("alice", "bob"):
            await h.offer(viewer, f"{viewer}-one1")
            assert (await h.reply(viewer, f"{viewer}-one1"))["type"] == "answer"
        await h.offer("carol", "carol-one1")
        refused = await h.reply("carol", "carol-one1")
        assert refused["type"] == "error" and refused["code"] == "busy", refused
        assert "handshake" in refused["message"], refused
        assert len(signaling.sessions) == 2
        # A re-offer of a negotiating session replaces it: not one more handshake.
        await h.offer("alice", "alice-one1")
        await wait_until(
            lambda: [m["type"] for m in h.to("alice")].count("answer") == 2,
            "a second answer to alice",
        )
        # bob gives up: his handshake slot is free for carol.
        h.send("bob", {"type": "bye", "session": "bob-one1"})
        await h.offer("carol", "carol-two2")
        assert (await h.reply("carol", "carol-two2"))["type"] == "answer"
    finally:
        await h.close()


async def test_a_re_offer_refused_for_the_handshake_limit_keeps_the_old_session() -> None:
    """Refusing an offer must change nothing: the session it would replace stays counted."""
    h = Harness(WebRtcConfig(max_viewers=8, max_handshakes=1, connect_timeout=60))
    signaling = h.start()
    try:
        await connected_viewer(h, "alice", "alice-one1")
        await h.offer("bob", "bob-one111")  # bob's handshake takes the only handshake slot
        assert (await h.reply("bob", "bob-one111"))["type"] == "answer"
        h.sent.clear()
        await h.offer("alice", "alice-one1")  # alice restarts her (connected) session
        refused = await h.reply("alice", "alice-one1")
        assert refused["type"] == "error" and refused["code"] == "busy", refused
        session = signaling.sessions.get(("alice", "alice-one1"))
        assert session is not None and session.connected and not session.closed
    finally:
        await h.close()


async def test_handshakes_that_never_connect_time_out_and_free_their_slots() -> None:
    h = Harness(WebRtcConfig(max_viewers=8, max_handshakes=1, connect_timeout=0.5))
    signaling = h.start()
    try:
        await h.offer("alice", "alice-one1")
        assert (await h.reply("alice", "alice-one1"))["type"] == "answer"
        # Nobody completes ICE: the connect timeout fails the session...
        bye = await h.reply("alice", "alice-one1", types=("bye",))
        assert bye["reason"] == "failed", bye
        assert not signaling.sessions
        # ... and the handshake slot is free again.
        await h.offer("bob", "bob-one111")
        assert (await h.reply("bob", "bob-one111"))["type"] == "answer"
    finally:
        await h.close()


# --- the retained status is refreshed -------------------------------------------------------


async def test_status_is_republished_every_status_refresh_without_changes() -> None:
    """A broker that lost its retained messages gets the status back without a reconnect."""
    h = Harness(options={"status_refresh": 0.2})
    h.start()
    try:
        for _ in range(300):
            if len(h.statuses()) >= 3:
                break
            await asyncio.sleep(0.02)
        assert len(h.statuses()) >= 3, h.statuses()
        assert all(s["state"] == "online" and s["viewers"] == 0 for s in h.statuses())
    finally:
        await h.close()


async def test_without_status_refresh_an_idle_device_publishes_nothing() -> None:
    h = Harness()
    h.start()
    try:
        await asyncio.sleep(0.5)
        assert h.statuses() == []
    finally:
        await h.close()


async def test_a_shutdown_does_not_wait_out_a_last_wills_grace() -> None:
    """A viewer's last will arrives, then SIGTERM: the will's grace timer is cancelled.

    The shutdown closes every session itself; the pending will must not keep
    the daemon waiting (nor close anything after the shutdown finished).
    """
    h = Harness()
    signaling = h.start()
    try:
        await connected_viewer(h, "alice", "alice-one1")
        h.send("alice", {"type": "bye", "session": "*"})

        def graces() -> list[asyncio.Task[object]]:
            return [t for t in asyncio.all_tasks() if t.get_name() == "peercam-will-alice"]

        await wait_until(graces, "alice's last-will grace timer")
        (grace,) = graces()
        await signaling.close()
        assert grace.cancelled()
        assert not signaling.sessions
        assert [m["type"] for m in h.to("alice")].count("bye") == 1, h.to("alice")
    finally:
        await h.close()


class SilentLan:
    """aioice's mDNS resolver on a LAN where nobody answers until ``answered`` is set."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self.answered = asyncio.Event()

    async def resolve(self, hostname: str, timeout: float | None = 1.0) -> str | None:
        self.asked.append(hostname)
        await self.answered.wait()
        return "127.0.0.1"


@pytest.fixture
def silent_lan(monkeypatch: pytest.MonkeyPatch) -> SilentLan:
    """aioice's shared mDNS resolver replaced by a ``SilentLan`` for this test."""
    lan = SilentLan()

    async def mdns_protocol(subscriber: object) -> SilentLan:
        return lan

    monkeypatch.setattr(aioice.ice, "get_or_create_mdns_protocol", mdns_protocol)
    return lan


async def trickling_offer(h: Harness, viewer: str, session: str) -> None:
    """An offer like a browser's: more candidates may follow (no a=end-of-candidates)."""
    sdp = "".join(
        line for line in (await h.offer_sdp()).splitlines(True) if "end-of-candidates" not in line
    )
    h.send(viewer, {"type": "offer", "session": session, "sdp": sdp})
    assert (await h.reply(viewer, session))["type"] == "answer"


def mdns_line(n: int) -> str:
    host = f"{n:08x}-7a1c-4d2e-9f00-5b1e2c3d4e5f.local"
    return f"candidate:{n} 1 udp 2122260223 {host} 5{n:04d} typ host"


async def test_mdns_candidates_resolve_side_by_side_without_holding_up_the_viewer(
    silent_lan: SilentLan,
) -> None:
    """A browser's trickled ``<uuid>.local`` candidates: each may take aioice a second.

    They are resolved at the same time, the viewer's next messages are
    handled meanwhile, and end-of-candidates still waits for them.
    """
    h = Harness()
    signaling = h.start()
    try:
        await trickling_offer(h, "alice", "alice-one1")
        session = signaling.sessions[("alice", "alice-one1")]
        for n in (1, 2):
            candidate = {"candidate": mdns_line(n), "sdpMid": "0", "sdpMLineIndex": 0}
            h.send("alice", {"type": "candidate", "session": "alice-one1", "candidate": candidate})
        h.send("alice", {"type": "candidate", "session": "alice-one1", "candidate": None})
        h.send("alice", {"type": "hello", "session": "alice-two2"})
        welcome = await h.reply("alice", "alice-two2", types=("welcome",))  # not held up
        assert welcome["session"] == "alice-two2"
        # both asked before either was answered
        await wait_until(lambda: len(silent_lan.asked) == 2, "both names asked")
        silent_lan.answered.set()
        ice = session._pc.getTransceivers()[0].receiver.transport.transport
        await wait_until(
            lambda: (
                {50001, 50002}
                <= {c.port for c in ice.getRemoteCandidates() if c.ip.endswith(".local")}
            ),
            "both resolved candidates among the remote ones",
        )
        assert not [m for m in h.to("alice") if m["type"] == "error"], h.to("alice")
    finally:
        await h.close()


async def test_a_session_closed_while_an_mdns_name_resolves_cancels_it(
    silent_lan: SilentLan,
) -> None:
    h = Harness()
    signaling = h.start()
    try:
        await trickling_offer(h, "alice", "alice-one1")
        session = signaling.sessions[("alice", "alice-one1")]
        await session.add_candidate(IceCandidate(mdns_line(3), "0", 0))
        (resolving,) = session._resolving
        assert silent_lan.asked and not resolving.done()
        h.send("alice", {"type": "bye", "session": "alice-one1"})
        await wait_until(resolving.done, "the resolving task to end")
        assert resolving.cancelled()
        assert not signaling.sessions
    finally:
        await h.close()


async def test_a_session_hung_up_while_answering_sends_no_answer_and_frees_its_relay(
    tmp_path: Path,
) -> None:
    """The call button hangs up (``press_during_call = "hangup"``) while the offer is answered.

    A STUN server that never answers keeps aiortc gathering for about 5 s;
    meanwhile the device hangs up.  The viewer must get its ``bye`` and no
    answer after it, and the TURN allocation aioice finished after the close
    must not outlive the session (its socket and refresh task leaked before).
    """
    try:
        coturn = LocalCoturn(tmp_path / "coturn", TURN_SECRET).start()
    except CoturnNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    silent_stun = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent_stun.bind(("127.0.0.1", 0))
    h = Harness()
    signaling = h.start()
    try:
        credentials = mint(TURN_SECRET, "peercam", 600)
        servers = [
            RTCIceServer(urls=f"stun:127.0.0.1:{silent_stun.getsockname()[1]}"),
            RTCIceServer(
                urls=coturn.url("udp"),
                username=credentials.username,
                credential=credentials.credential,
            ),
        ]

        async def device_servers() -> list[RTCIceServer]:
            return servers

        signaling.ice.device_servers = device_servers  # type: ignore[method-assign]
        sdp = await h.offer_sdp()
        h.send("alice", {"type": "offer", "session": "alice-one1", "sdp": sdp})
        await wait_until(lambda: ("alice", "alice-one1") in signaling.sessions, "offer taken")
        session = signaling.sessions[("alice", "alice-one1")]
        await asyncio.sleep(0.5)  # inside the answer's candidate gathering
        assert not h.to("alice"), h.to("alice")
        await signaling.hang_up("alice", "alice-one1")
        connection = session._pc.getTransceivers()[0].sender.transport.transport._connection
        # gathering gives up on the silent STUN server after about 5 s
        await wait_until(lambda: connection._local_candidates_end, "gathering ended", timeout=15)
        await asyncio.sleep(0.5)  # the answer's own ending runs
        assert [(m["type"], m.get("reason")) for m in h.to("alice")] == [("bye", "hangup")]
        assert session.closed and not signaling.sessions
        assert connection._protocols == [], "sockets (a TURN allocation) outlived the session"
        refreshing = [t for t in asyncio.all_tasks() if "refresh" in repr(t.get_coro())]
        assert not refreshing, refreshing
    finally:
        await h.close()
        silent_stun.close()
        coturn.stop()
