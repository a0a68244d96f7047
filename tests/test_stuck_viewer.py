"""A viewer that is stuck (ICE never completes) or a consumer that stops reading costs
the others no key frames.

The watching viewer's decoded key frames are counted over a stretch of the
stream measured in frames (not seconds): with an IDR every ``INTERVAL``
frames, ``WINDOW`` frames may hold at most ``ceil(WINDOW / INTERVAL)`` of the
stream's own plus one for a join.  Before the fix, a session in ICE
checking made the hub ask for an IDR about every half second ("fell
behind"): ~19 key frames in 300 frames instead of 5.
"""

from __future__ import annotations

import asyncio
import math
import re
import socket

from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from peercam.hub import MediaHub
from peercam.session import Session
from peercam.sources.test_pattern import TestPatternSource
from tests.conftest import DaemonFactory, ViewerFactory
from tests.mosquitto import MosquittoBroker
from tests.viewer import create_offer, new_session_id
from tests.waiting import wait_until

INTERVAL = 60  # frames between the stream's own IDRs (2 s at 30 fps)
WINDOW = 300  # frames watched while the other viewer is stuck (10 s of stream)
ALLOWED = math.ceil(WINDOW / INTERVAL) + 1  # the stream's own, plus one for a join
WAIT = 30.0


def blackholed(offer_sdp: str, port: int) -> str:
    """The offer with every ICE candidate pointing at a UDP port that never answers.

    The device's connectivity checks go to a socket the test holds and never
    reads: the device's session stays in ICE checking (as a phone whose
    network dropped mid-handshake) until its connect timeout.
    """
    return re.sub(
        r"^(a=candidate:\S+ \d+ udp \d+ )\S+ \d+ (typ \S+).*$",
        rf"\g<1>127.0.0.1 {port} \g<2>",
        offer_sdp,
        flags=re.MULTILINE,
    )


def keyframes_between(keyframes: list[int], start: int, end: int) -> int:
    return sum(1 for k in keyframes if start <= k < end)


async def test_a_viewer_hanging_in_ice_checking_costs_the_watching_viewer_no_idrs(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await daemon_factory(
        mosquitto,
        config={
            "camera": {"width": 640, "height": 480, "keyframe_interval": INTERVAL},
            "webrtc": {"connect_timeout": 60},
        },
    )
    alice = await viewer_factory(mosquitto, "alice")
    watch = await alice.watch(timeout=WAIT)
    await watch.wait_frames(30, WAIT)

    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    bob = await viewer_factory(mosquitto, "bob")
    pc = await create_offer()
    try:
        sid = new_session_id()
        await bob.send({"type": "hello", "session": sid})
        await bob.expect_reply(sid, "welcome", WAIT)
        sdp = blackholed(pc.localDescription.sdp, hole.getsockname()[1])
        assert f"127.0.0.1 {hole.getsockname()[1]} typ host" in sdp
        await bob.send({"type": "offer", "session": sid, "sdp": sdp})
        await bob.expect_reply(sid, "answer", WAIT)
        start = watch.frames
        await watch.wait_frames(start + WINDOW, WAIT)
        end = watch.frames
        assert not [m for m in bob.pending() if m.get("type") == "bye"], (
            "bob's session ended early: the test did not hold it in ICE checking"
        )
        # The daemon still counts bob as a session being set up.
        got = keyframes_between(watch.keyframes, start, end)
        print(f"watching viewer: {got} key frames in {end - start} frames (bob in ICE checking)")
        assert got <= ALLOWED, (
            f"{got} key frames in {end - start} frames while bob hung in ICE checking "
            f"(the stream's own interval allows {ALLOWED}); at {watch.keyframes}"
        )
        assert "fell behind" not in daemon.log_text()
    finally:
        await pc.close()
        hole.close()


class _Decoder:
    """A loopback aiortc viewer of an in-process Session: counts decoded key frames."""

    def __init__(self) -> None:
        self.frames = 0
        self.keyframes: list[int] = []
        self.tasks: list[asyncio.Task[None]] = []

    def on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self.tasks.append(asyncio.create_task(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if getattr(frame, "key_frame", False):
                self.keyframes.append(self.frames)
            self.frames += 1


async def _connect(session: Session, decoder: _Decoder):  # type: ignore[no-untyped-def]
    pc = await create_offer()
    pc.on("track", decoder.on_track)
    answer = await session.answer(pc.localDescription.sdp)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    return pc


async def test_a_consumer_that_stops_reading_costs_the_watching_viewer_no_idrs() -> None:
    """A stalled sender (its ``recv()`` stops being served) must not make the encoder spray IDRs."""
    source = TestPatternSource(
        width=320, height=240, fps=30, bitrate=300_000, keyframe_interval=INTERVAL
    )
    hub = MediaHub(source, kind="video", queue_frames=15, idle_stop=1)

    def session(name: str) -> Session:
        return Session(
            name,
            new_session_id(),
            video=hub,
            audio=None,
            ice_servers=[],
            connect_timeout=30,
            on_end=lambda *_: None,
        )

    alice, bob = session("alice"), session("bob")
    seen_alice, seen_bob = _Decoder(), _Decoder()
    pcs = []
    try:
        pcs.append(await _connect(alice, seen_alice))
        pcs.append(await _connect(bob, seen_bob))
        await wait_until(lambda: seen_bob.frames >= 30, "bob decodes 30 frames", WAIT)
        # bob's sender stops reading (a stalled sender, a starved task) and never resumes
        track = bob._tracks[0]
        stalled = asyncio.Event()
        track.recv = stalled.wait  # type: ignore[method-assign]
        start_in = hub.keyframes_in
        start = seen_alice.frames
        await wait_until(
            lambda: seen_alice.frames >= start + WINDOW, f"alice decodes {WINDOW} more", WAIT
        )
        got = keyframes_between(seen_alice.keyframes, start, seen_alice.frames)
        print(f"watching viewer: {got} key frames in {seen_alice.frames - start} frames (stalled)")
        assert got <= ALLOWED, f"alice decoded {got} key frames: {seen_alice.keyframes}"
        assert hub.keyframes_in - start_in <= ALLOWED
        assert track.subscription.dropped > 0, "bob's queue overflowed (the case under test)"
    finally:
        for pc in pcs:
            await pc.close()
        await alice.close()
        await bob.close()
        await hub.close()
        for task in seen_alice.tasks + seen_bob.tasks:
            task.cancel()
