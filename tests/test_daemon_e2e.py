"""The daemon end to end: real ``peercam run`` subprocess, real Mosquitto, real aiortc viewers.

Everything here follows PROTOCOL.md from the viewer's side and asserts
structure and correctness, never speed: every wait is bounded, but only to
turn a hang into a clear failure.  ICE stays on 127.0.0.1 (the daemon's
``host_networks`` and the viewer's ``restrict_host_addresses``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.daemon_proc import (
    DaemonFactory,
    DaemonProcess,
    attach_module_device,
    module_device,
    to_toml,
)
from tests.mosquitto import MosquittoBroker
from tests.viewer import (
    SignalingError,
    Viewer,
    ViewerFactory,
    WatchSession,
    create_offer,
    new_session_id,
)

pytestmark = pytest.mark.timeout(90)

DEVICE = "frontdoor"
FRAMES = 30
WAIT = 15.0  # bound for anything that should take well under a second here


# --- SDP helpers ------------------------------------------------------------------------


def media_sections(sdp: str) -> list[list[str]]:
    """The SDP's m-sections, each as its list of lines (the m= line first)."""
    sections: list[list[str]] = []
    for line in sdp.replace("\r\n", "\n").split("\n"):
        if line.startswith("m="):
            sections.append([line])
        elif sections and line:
            sections[-1].append(line)
    return sections


def section_of(sdp: str, kind: str) -> list[str]:
    found = [s for s in media_sections(sdp) if s[0].startswith(f"m={kind} ")]
    assert len(found) == 1, f"expected one {kind} m-section in:\n{sdp}"
    return found[0]


def codecs_of(section: list[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """payload type -> (codec name, fmtp parameters) for one m-section."""
    payload_types = section[0].split()[3:]
    names: dict[str, str] = {}
    params: dict[str, dict[str, str]] = {}
    for line in section:
        if m := re.match(r"a=rtpmap:(\d+) ([^/]+)/", line):
            names[m.group(1)] = m.group(2)
        elif m := re.match(r"a=fmtp:(\d+) (.*)", line):
            params[m.group(1)] = dict(
                p.strip().split("=", 1) for p in m.group(2).split(";") if "=" in p
            )
    return {pt: (names.get(pt, "?"), params.get(pt, {})) for pt in payload_types}


def direction_of(section: list[str]) -> str | None:
    for line in section:
        if line in ("a=sendonly", "a=recvonly", "a=sendrecv", "a=inactive"):
            return line[2:]
    return None


def candidate_addresses(sdp: str) -> set[str]:
    """The connection addresses of every ``a=candidate`` line."""
    return {
        line.split()[4]
        for line in sdp.replace("\r\n", "\n").split("\n")
        if line.startswith("a=candidate:")
    }


def assert_h264_sendonly_answer(sdp: str) -> None:
    """The answer's video is H.264 constrained baseline, packetization-mode 1, sendonly."""
    video = section_of(sdp, "video")
    assert direction_of(video) == "sendonly", video
    codecs = codecs_of(video)
    media = {pt: c for pt, c in codecs.items() if c[0].lower() != "rtx"}
    assert media, f"no media codec in the answer's video m-line: {video}"
    for pt, (name, params) in media.items():
        assert name.lower() == "h264", f"payload {pt} is {name}, not H264: {video}"
        assert params.get("profile-level-id", "").lower() == "42e01f", (pt, params)
        assert params.get("packetization-mode") == "1", (pt, params)


# --- small helpers ----------------------------------------------------------------------


async def start_device(
    daemon_factory: DaemonFactory, broker: MosquittoBroker, **webrtc: Any
) -> DaemonProcess:
    config = {"webrtc": webrtc} if webrtc else None
    return await daemon_factory(broker, device=DEVICE, config=config)


async def watch_and_decode(viewer: Viewer, n: int = FRAMES, **kwargs: Any) -> WatchSession:
    watch = await viewer.watch(timeout=WAIT, **kwargs)
    await watch.wait_frames(n, WAIT)
    return watch


def assert_error(
    error: dict[str, Any], code: str, session: str | None, *, session_optional: bool = False
) -> None:
    """An ``error`` with ``code``, a human-readable message and the session when known."""
    assert error.get("v") == 1, error
    assert error.get("type") == "error", error
    assert error.get("code") == code, error
    message = error.get("message")
    assert isinstance(message, str) and len(message) >= 5, error
    if session is not None and not session_optional:
        assert error.get("session") == session, error
    elif session is None:
        assert error.get("session") is None, f"error names a session it cannot know: {error}"
    else:
        assert error.get("session") in (None, session), error


# --- one viewer -------------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(320, 240), (640, 480)])
async def test_one_viewer_gets_h264_at_the_configured_size(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    width: int,
    height: int,
) -> None:
    daemon = await daemon_factory(
        mosquitto, device=DEVICE, config={"camera": {"width": width, "height": height}}
    )
    viewer = await viewer_factory(mosquitto, "alice", device=DEVICE)

    status = await viewer.wait_status(state="online", timeout=WAIT)
    assert status["v"] == 1 and status["type"] == "status"
    assert status["name"] == "Front door"
    assert status["viewers"] == 0 and status["max_viewers"] == 4
    assert status["call"] is None and status["audio"] is None
    assert status["video"]["width"] == width and status["video"]["height"] == height
    assert isinstance(status["version"], str) and status["version"]

    watch = await watch_and_decode(viewer)

    welcome = watch.welcome
    assert welcome is not None
    assert welcome["v"] == 1 and welcome["type"] == "welcome" and welcome["session"] == watch.id
    assert isinstance(welcome["ice_servers"], list)
    assert isinstance(welcome["ice_ttl"], int) and welcome["ice_ttl"] > 0
    video = welcome["video"]
    assert set(video) >= {"codec", "width", "height", "fps"}, video
    assert str(video["codec"]).lower() == "h264"
    assert (video["width"], video["height"], video["fps"]) == (width, height, 30)
    assert welcome["audio"] is None
    assert welcome["talkback"] is False

    assert watch.answer_sdp is not None
    assert_h264_sendonly_answer(watch.answer_sdp)
    assert not [s for s in media_sections(watch.answer_sdp) if s[0].startswith("m=audio")] or (
        direction_of(section_of(watch.answer_sdp, "audio")) in ("inactive", "sendonly")
    )

    assert watch.frames >= FRAMES
    assert set(watch.frame_sizes) == {(width, height)}, watch.frame_sizes
    assert watch.time_to_first_frame is not None and watch.offer_to_first_frame is not None
    # ICE stays on loopback on both sides (this workplace's rule, and the config's).
    assert watch.offer_sdp is not None
    assert candidate_addresses(watch.offer_sdp) == {"127.0.0.1"}, watch.offer_sdp
    assert candidate_addresses(watch.answer_sdp) == {"127.0.0.1"}, watch.answer_sdp
    pair = watch.selected_pair()
    if pair is not None:
        assert pair.local_address.startswith("127.") and pair.remote_address.startswith("127.")

    await viewer.wait_status(viewers=1, timeout=WAIT)
    await watch.bye()
    await viewer.wait_status(viewers=0, timeout=WAIT)
    assert not [m for m in viewer.pending() if m.get("type") == "error"], viewer.pending()
    await viewer.close()
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("viewer-")]
    assert not leftovers, f"the viewer left tasks behind: {leftovers}"
    daemon.assert_no_traceback()


async def test_hello_may_be_skipped_and_candidates_may_end_explicitly(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """PROTOCOL.md: a viewer holding ice_servers may offer directly; candidate null is fine."""
    daemon = await start_device(daemon_factory, mosquitto)
    viewer = await viewer_factory(mosquitto, "alice", device=DEVICE)
    first = await watch_and_decode(viewer, 5)
    await first.bye()
    second = await watch_and_decode(viewer, 5, hello=False, end_of_candidates=True)
    assert second.hello_sent_at is None
    await viewer.wait_status(viewers=1, timeout=WAIT)
    await second.bye()
    await viewer.wait_status(viewers=0, timeout=WAIT)
    assert not [m for m in viewer.pending() if m.get("type") == "error"], viewer.pending()
    daemon.assert_no_traceback()


# --- several viewers --------------------------------------------------------------------


async def test_two_then_four_viewers_decode_a_fifth_is_busy_until_one_leaves(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto, max_viewers=4)
    viewers = [await viewer_factory(mosquitto, f"viewer{i}", device=DEVICE) for i in range(5)]

    first_two = await asyncio.gather(*(watch_and_decode(v) for v in viewers[:2]))
    await viewers[0].wait_status(viewers=2, timeout=WAIT)
    next_two = await asyncio.gather(*(watch_and_decode(v) for v in viewers[2:4]))
    watches = [*first_two, *next_two]
    await viewers[0].wait_status(viewers=4, timeout=WAIT)
    # All four keep decoding together.
    await asyncio.gather(*(w.wait_more_frames(FRAMES, WAIT) for w in watches))
    for watch in watches:
        assert set(watch.frame_sizes) == {(320, 240)}

    fifth = viewers[4]
    session = new_session_id()
    with pytest.raises(SignalingError) as refused:
        await fifth.watch(session, timeout=WAIT)
    assert_error(refused.value.error, "busy", session)
    await asyncio.gather(*(w.wait_more_frames(10, WAIT) for w in watches))

    await watches[0].bye()
    await viewers[0].wait_status(viewers=3, timeout=WAIT)
    late = await watch_and_decode(fifth)
    await viewers[0].wait_status(viewers=4, timeout=WAIT)
    await asyncio.gather(*(w.wait_more_frames(10, WAIT) for w in [*watches[1:], late]))
    daemon.assert_no_traceback()


async def test_two_viewers_may_use_the_same_session_id(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """Sessions are keyed by (viewer, session): equal ids from two viewers do not collide."""
    daemon = await start_device(daemon_factory, mosquitto)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    shared = "same-session-id-1"
    a, b = await asyncio.gather(
        watch_and_decode(alice, session=shared), watch_and_decode(bob, session=shared)
    )
    await alice.wait_status(viewers=2, timeout=WAIT)
    await a.bye()
    await alice.wait_status(viewers=1, timeout=WAIT)
    await b.wait_more_frames(FRAMES, WAIT)
    assert b.device_bye is None
    assert not [m for m in bob.pending() if m.get("type") in ("error", "bye")], bob.pending()
    daemon.assert_no_traceback()


# --- leaving ----------------------------------------------------------------------------


async def test_bye_closes_only_that_session(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    one, two = await asyncio.gather(watch_and_decode(alice), watch_and_decode(alice))
    await alice.wait_status(viewers=2, timeout=WAIT)
    await one.bye()
    await alice.wait_status(viewers=1, timeout=WAIT)
    await two.wait_more_frames(FRAMES, WAIT)
    await two.bye()
    await alice.wait_status(viewers=0, timeout=WAIT)
    daemon.assert_no_traceback()


async def test_last_will_closes_every_session_of_that_viewer_only(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    alice_watches = await asyncio.gather(watch_and_decode(alice), watch_and_decode(alice))
    bobs = await watch_and_decode(bob)
    await bob.wait_status(viewers=3, timeout=WAIT)

    await alice.drop()  # no DISCONNECT: the broker publishes alice's will, bye "*"
    await bob.wait_status(viewers=1, timeout=WAIT)
    await bobs.wait_more_frames(FRAMES, WAIT)
    for watch in alice_watches:
        # The device closed its side: DTLS close_notify ends alice's connections.
        await watch.wait_connection_state("closed", "failed", timeout=WAIT)
    assert "bye" not in {m.get("type") for m in bob.pending()}
    daemon.assert_no_traceback()


# --- bad input --------------------------------------------------------------------------

S = "session-abc-123"  # a valid session id carried by the messages below
KNOWN, UNKNOWN, EITHER = "known", "unknown", "either"

Build = Callable[[contextlib.AsyncExitStack], Awaitable[bytes]]


def _json(obj: Any) -> Build:
    async def build(stack: contextlib.AsyncExitStack) -> bytes:
        return json.dumps(obj).encode()

    return build


def _raw(payload: bytes) -> Build:
    async def build(stack: contextlib.AsyncExitStack) -> bytes:
        return payload

    return build


def _offer(**offer_kwargs: Any) -> Build:
    """An offer message with a real aiortc offer SDP (closed with the stack)."""

    async def build(stack: contextlib.AsyncExitStack) -> bytes:
        pc = await create_offer([], **offer_kwargs)
        stack.push_async_callback(pc.close)
        sdp = pc.localDescription.sdp
        return json.dumps({"v": 1, "type": "offer", "session": S, "sdp": sdp}).encode()

    return build


def _offer_sdp(sdp: str) -> Build:
    return _json({"v": 1, "type": "offer", "session": S, "sdp": sdp})


@dataclass(frozen=True)
class BadCase:
    name: str
    build: Build
    code: str
    session: str  # KNOWN: the error names S; UNKNOWN: it names none; EITHER: S or none


BAD_CASES = [
    BadCase("not-json", _raw(b"{nope"), "bad-request", UNKNOWN),
    BadCase(
        "not-utf8", _raw(b'{"v":1,"type":"hello","session":"\xff\xfe"}'), "bad-request", UNKNOWN
    ),
    BadCase("not-an-object", _raw(b"[1,2]"), "bad-request", UNKNOWN),
    BadCase("missing-type", _json({"v": 1, "session": S}), "bad-request", KNOWN),
    BadCase("type-not-a-string", _json({"v": 1, "type": 7, "session": S}), "bad-request", KNOWN),
    BadCase("missing-v", _json({"type": "hello", "session": S}), "bad-request", KNOWN),
    BadCase("wrong-v", _json({"v": 2, "type": "hello", "session": S}), "unsupported", KNOWN),
    BadCase(
        "unknown-type", _json({"v": 1, "type": "teleport", "session": S}), "unsupported", KNOWN
    ),
    BadCase(
        "device-only-type", _json({"v": 1, "type": "welcome", "session": S}), "unsupported", KNOWN
    ),
    BadCase(
        "session-not-a-string",
        _json({"v": 1, "type": "hello", "session": 12}),
        "bad-request",
        UNKNOWN,
    ),
    BadCase(
        "bad-session-id", _json({"v": 1, "type": "hello", "session": "x"}), "bad-request", UNKNOWN
    ),
    BadCase("missing-session", _json({"v": 1, "type": "hello"}), "bad-request", UNKNOWN),
    BadCase(
        "over-64-KiB",
        _json({"v": 1, "type": "hello", "session": S, "pad": "x" * 70_000}),
        "bad-request",
        EITHER,
    ),
    BadCase(
        "candidate-for-unknown-session",
        _json(
            {
                "v": 1,
                "type": "candidate",
                "session": S,
                "candidate": {
                    "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
                    "sdpMid": "0",
                    "sdpMLineIndex": 0,
                },
            }
        ),
        "unknown-session",
        KNOWN,
    ),
    BadCase("offer-without-h264", _offer(video_mime="video/VP8"), "unsupported", KNOWN),
    BadCase("offer-without-video", _offer(video=False, audio=True), "unsupported", KNOWN),
    BadCase(
        "offer-sdp-garbage", _offer_sdp("this is not a session description"), "bad-request", KNOWN
    ),
    BadCase(
        "offer-sdp-garbage-after-v0",
        _offer_sdp("v=0\r\nm=video nonsense\r\nx\r\n"),
        "bad-request",
        KNOWN,
    ),
    BadCase(
        "offer-sdp-not-a-string",
        _json({"v": 1, "type": "offer", "session": S, "sdp": 5}),
        "bad-request",
        KNOWN,
    ),
]


@pytest.fixture(scope="module")
def shared_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MosquittoBroker, DaemonProcess]]:
    """One broker and one daemon for all bad-input cases (they must survive them all)."""
    with module_device(tmp_path_factory.mktemp("shared-device"), DEVICE, "shared") as shared:
        yield shared


@pytest.fixture
def device(
    shared_device: tuple[MosquittoBroker, DaemonProcess], request: pytest.FixtureRequest
) -> tuple[MosquittoBroker, DaemonProcess]:
    """The shared broker and daemon, their logs attached to this test's report."""
    return attach_module_device(shared_device, request.node, "shared")


@pytest.mark.parametrize("case", BAD_CASES, ids=[c.name for c in BAD_CASES])
async def test_bad_input_gets_an_error_and_disturbs_nobody(
    device: tuple[MosquittoBroker, DaemonProcess],
    viewer_factory: ViewerFactory,
    case: BadCase,
) -> None:
    broker, daemon = device
    mallory = await viewer_factory(broker, "mallory", device=DEVICE)
    await mallory.wait_status(viewers=0, timeout=WAIT)  # earlier cases are over
    bystander = await viewer_factory(broker, "bystander", device=DEVICE)
    watching = await watch_and_decode(bystander, 10)

    async with contextlib.AsyncExitStack() as stack:
        payload = await case.build(stack)
        await mallory.send_raw(payload)
        error = await mallory.next_message("error", timeout=WAIT)
    assert_error(
        error,
        case.code,
        None if case.session == UNKNOWN else S,
        session_optional=case.session == EITHER,
    )

    # The bystander's session never noticed; the same bad viewer can still watch.
    await watching.wait_more_frames(10, WAIT)
    assert watching.device_bye is None
    good = await watch_and_decode(mallory, 10)
    await good.bye()
    await watching.bye()
    await mallory.wait_status(viewers=0, timeout=WAIT)
    assert not mallory.pending(), f"unexpected extra messages: {mallory.pending()}"
    assert daemon.running
    daemon.assert_no_traceback()


async def test_a_flood_is_rate_limited_then_the_viewer_can_watch_again(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto)
    bystander = await viewer_factory(mosquitto, "bystander", device=DEVICE)
    watching = await watch_and_decode(bystander, 10)
    flooder = await viewer_factory(mosquitto, "flooder", device=DEVICE)
    decline = json.dumps({"v": 1, "type": "decline", "call": "no-such-call-1"}).encode()
    await asyncio.gather(*(flooder.send_raw(decline) for _ in range(150)))
    error = await flooder.next_message("error", timeout=WAIT)
    assert_error(error, "rate-limited", None)
    await watching.wait_more_frames(10, WAIT)

    # Tokens come back within a fraction of a second; probe (bounded) until answered.
    probe = {"v": 1, "type": "candidate", "session": S, "candidate": None}
    deadline = time.monotonic() + WAIT
    while True:
        await flooder.send(probe)
        with contextlib.suppress(AssertionError):
            reply = await flooder.next_message(session=S, timeout=0.5)
            assert_error(reply, "unknown-session", S)
            break
        assert time.monotonic() < deadline, f"flooder never answered again: {flooder.pending()}"
    good = await watch_and_decode(flooder, 10)
    await good.bye()
    daemon.assert_no_traceback()


# --- the daemon going away ----------------------------------------------------------------


async def test_sigkill_leaves_the_retained_offline_status_by_last_will(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto)
    viewer = await viewer_factory(mosquitto, "alice", device=DEVICE)
    await watch_and_decode(viewer, 10)
    await viewer.wait_status(viewers=1, timeout=WAIT)

    assert daemon.kill() == -9
    status = await viewer.wait_status(state="offline", timeout=WAIT)
    assert status["viewers"] == 0
    # Retained: a viewer arriving later learns the device is offline.
    async with daemon.watch_status() as late:
        retained = await late.wait_for(lambda s: True, WAIT)
    assert retained["state"] == "offline", retained
    daemon.assert_no_traceback()


async def test_sigterm_says_bye_shutdown_publishes_offline_and_exits_0(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    daemon = await start_device(daemon_factory, mosquitto)
    viewer = await viewer_factory(mosquitto, "alice", device=DEVICE)
    watch = await watch_and_decode(viewer, 10)

    assert await daemon.terminate() == 0
    bye = await watch.wait_bye(WAIT)
    assert bye["v"] == 1 and bye["session"] == watch.id and bye.get("reason") == "shutdown"
    status = await viewer.wait_status(state="offline", timeout=WAIT)
    assert status["viewers"] == 0
    async with daemon.watch_status() as late:
        retained = await late.wait_for(lambda s: True, WAIT)
    assert retained["state"] == "offline", retained
    daemon.assert_no_traceback()


# --- the broker going away ----------------------------------------------------------------

OUTAGE = 3.0  # seconds the broker stays down


async def _outage(broker: MosquittoBroker, watch: WatchSession, *, crash: bool) -> int:
    """Take the broker down (same port after) for OUTAGE seconds, and for as long as it takes
    to decode FRAMES more frames (bounded by WAIT); returns the frames decoded meanwhile."""
    port = broker.port
    down_at = time.monotonic()
    before = watch.frames
    if crash:
        broker.kill()
    else:
        broker.stop()
    with contextlib.suppress(AssertionError):  # judged by the caller from the count
        await watch.wait_more_frames(FRAMES, WAIT)
    if (left := OUTAGE - (time.monotonic() - down_at)) > 0:
        await asyncio.sleep(left)  # the outage itself, not a wait for an event
    during = watch.frames - before
    broker.start()
    assert broker.port == port
    return during


@pytest.mark.parametrize("crash", [False, True], ids=["stop-start", "kill-start"])
async def test_broker_outage_media_continues_and_the_daemon_comes_back(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    crash: bool,
) -> None:
    """The broker is down for 3 s or more (clean stop, or SIGKILL), then back on the same port.

    P2P media does not notice; the daemon reconnects by itself and new viewers
    can watch.  A clean stop makes mosquitto publish every client's last will
    (alice's ``bye *`` included) just before it drops the daemon: the daemon
    must not take that for alice leaving.
    """
    daemon = await start_device(daemon_factory, mosquitto)
    alice = await viewer_factory(mosquitto, "alice", device=DEVICE)
    watch = await watch_and_decode(alice)
    await alice.wait_status(viewers=1, timeout=WAIT)

    during = await _outage(mosquitto, watch, crash=crash)
    assert during >= FRAMES, f"only {during} frames while the broker was down: {watch.describe()}"

    # Back online (backoff), with a retained status that still counts alice.
    status = await daemon.wait_status(lambda s: s.get("state") == "online", timeout=30)
    assert status["viewers"] == 1, status
    bob = await viewer_factory(mosquitto, "bob", device=DEVICE)
    bobs = await watch_and_decode(bob)
    await bob.wait_status(viewers=2, timeout=WAIT)
    await asyncio.gather(watch.wait_more_frames(FRAMES, WAIT), bobs.wait_more_frames(10, WAIT))
    assert watch.device_bye is None and watch.connection_state == "connected"

    # alice's MQTT connection died with the broker; back on it, she can hang up.
    await alice.reconnect()
    await watch.bye()
    await bob.wait_status(viewers=1, timeout=WAIT)
    daemon.assert_no_traceback()


# --- shutdown racing with closing sessions ----------------------------------------------------


@pytest.mark.parametrize("attempt", [1, 2, 3])
async def test_sigterm_right_after_viewers_hang_up_exits_0_without_traceback(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    attempt: int,
) -> None:
    """Sessions still closing when SIGTERM comes: the daemon exits 0, promptly, no Traceback.

    A race, so it runs a few times; each attempt is independent.
    """
    daemon = await daemon_factory(mosquitto, device=DEVICE, allow_traceback=True)
    viewer = await viewer_factory(mosquitto, "alice", device=DEVICE)
    watches = [await watch_and_decode(viewer, 5) for _ in range(3)]
    await asyncio.gather(*(w.bye() for w in watches))
    assert await daemon.terminate(timeout=10) == 0
    daemon.assert_no_traceback()


# --- the helpers themselves -------------------------------------------------------------------


def test_to_toml_round_trips_the_config_shape() -> None:
    import tomllib

    data = {
        "device": {"id": "frontdoor", "name": 'Front "door"\\ ü\n\x7f'},
        "mqtt": {"url": "mqtt://127.0.0.1:1883", "password_file": ""},
        "camera": {"width": 640, "bitrate": 1_000_000, "idle_stop": 0.5},
        "webrtc": {"ice_servers": [], "host_networks": ["127.0.0.1/32"], "flag": True},
    }
    assert tomllib.loads(to_toml(data)) == data
