"""Hostile input against the real daemon over a real Mosquitto.

A bounded hypothesis run publishes random payloads and protocol-shaped
messages on several viewers' ``in`` topics; a list of mangled offer SDPs
(truncated, huge, non-UTF-8, without m-lines, thousands of candidates ...)
goes in one by one; floods test the per-viewer session limit and the total
handshake limit.  After each: every reply is well-formed (never ``internal``),
the daemon runs, logged no traceback, and the next good session works.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peercam.protocol import ErrorCode
from tests.daemon_proc import (
    DaemonFactory,
    DaemonProcess,
    attach_module_device,
    module_device,
)
from tests.mosquitto import MosquittoBroker
from tests.test_protocol_fuzz import protocol_messages
from tests.viewer import Viewer, ViewerFactory, create_offer, new_session_id

pytestmark = pytest.mark.timeout(180)

DEVICE = "frontdoor"
WAIT = 15.0
CODES = {str(c) for c in ErrorCode} - {str(ErrorCode.INTERNAL)}
HOSTILE_CONFIG = {"webrtc": {"max_viewers": 4, "connect_timeout": 3.0}}


@pytest.fixture(scope="module")
def hostile_device(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[MosquittoBroker, DaemonProcess]]:
    """One broker and daemon for every hostile case in this module: it must survive them all."""
    with module_device(
        tmp_path_factory.mktemp("hostile-device"), DEVICE, "hostile-input", HOSTILE_CONFIG
    ) as shared:
        yield shared


@pytest.fixture
def device(
    hostile_device: tuple[MosquittoBroker, DaemonProcess], request: pytest.FixtureRequest
) -> tuple[MosquittoBroker, DaemonProcess]:
    return attach_module_device(hostile_device, request.node, "hostile")


def assert_well_formed(viewer: Viewer) -> None:
    for topic, message in viewer.received:
        if topic != viewer.out_topic:
            continue
        assert message.get("v") == 1, message
        assert message.get("type") in {"welcome", "answer", "error", "bye"}, message
        if message["type"] == "error":
            assert message.get("code") in CODES, message
            assert isinstance(message.get("message"), str) and message["message"], message


async def next_good_session_works(broker: MosquittoBroker, viewer: Viewer | None = None) -> None:
    """A (possibly just hostile) viewer watches, decodes and hangs up; the slot comes back."""
    own = viewer is None
    if viewer is None:
        viewer = Viewer(broker.url, device=DEVICE, viewer_id="goodviewer")
        await viewer.connect()
    try:
        watch = await viewer.watch(timeout=WAIT)
        await watch.wait_frames(10, WAIT)
        await watch.bye()
    finally:
        if own:
            await viewer.close()


async def wait_idle(broker: MosquittoBroker) -> None:
    """Until the daemon counts no session (hostile offers time out after connect_timeout)."""
    async with Viewer(broker.url, device=DEVICE, viewer_id="statuswatcher") as watcher:
        await watcher.wait_status(viewers=0, timeout=WAIT)


# --- a bounded hypothesis run ------------------------------------------------------------

fuzz_payloads = st.one_of(
    st.binary(max_size=400),
    protocol_messages().map(lambda m: json.dumps(m).encode("utf-8", "surrogatepass")),
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    viewer=st.sampled_from([f"mallory{i}" for i in range(6)]),
    payloads=st.lists(fuzz_payloads, min_size=1, max_size=12),
)
def test_random_messages_on_in_topics_never_hurt_the_daemon(
    device: tuple[MosquittoBroker, DaemonProcess], viewer: str, payloads: list[bytes]
) -> None:
    broker, daemon = device

    async def scenario() -> None:
        mallory = Viewer(broker.url, device=DEVICE, viewer_id=viewer)
        await mallory.connect()
        try:
            for payload in payloads:
                await mallory.send_raw(payload)
            # Messages of one viewer are handled in order: the probe's answer
            # means everything before it was handled.
            probe = new_session_id()
            await mallory.send({"type": "candidate", "session": probe, "candidate": None})
            with contextlib.suppress(AssertionError):  # a rate-limited probe is dropped
                await mallory.next_message(session=probe, timeout=WAIT)
            assert_well_formed(mallory)
        finally:
            await mallory.drop()  # the will closes whatever it opened
            await mallory.close()
        assert daemon.running, daemon.log_text()

    asyncio.run(scenario())


async def test_after_the_random_messages_a_good_session_works(
    device: tuple[MosquittoBroker, DaemonProcess],
) -> None:
    broker, daemon = device
    await wait_idle(broker)
    await next_good_session_works(broker)
    daemon.assert_no_traceback()


# --- mangled offer SDP -----------------------------------------------------------------------


def _lines(sdp: str) -> list[str]:
    return sdp.split("\r\n")


def _without(prefix: str) -> Callable[[str], str]:
    return lambda sdp: "\r\n".join(x for x in _lines(sdp) if not x.startswith(prefix))


def _candidates(n: int) -> Callable[[str], str]:
    def add(sdp: str) -> str:
        extra = "".join(
            f"a=candidate:{k} 1 udp 2130706431 127.0.{k // 200}.{k % 200 + 1} 9 typ host\r\n"
            for k in range(n)
        )
        return sdp + extra

    return add


def _huge(sdp: str) -> str:
    pad = "a=x-pad:" + "p" * 200 + "\r\n"
    return sdp + pad * ((59_000 - len(sdp)) // len(pad))


MANGLES: dict[str, tuple[Callable[[str], str] | bytes, str]] = {
    # name: (mangle of a real offer SDP, or a raw payload; expected "error" / "answer" / "either")
    "truncated-half": (lambda s: s[: len(s) // 2], "either"),
    "truncated-after-m-line": (lambda s: s[: s.index("m=video") + 40], "error"),
    "huge-59kB": (_huge, "either"),
    "over-60kB": (lambda s: _huge(s) + "a=x:" + "p" * 2000 + "\r\n", "error"),
    "non-utf8-bytes": (
        b'{"v":1,"type":"offer","session":"mangled-1","sdp":"v=0\xff\xfe m="}',
        "error",
    ),
    "lone-surrogates": (lambda s: s.replace("a=mid:0", "a=mid:0\udcff"), "either"),
    "no-m-lines": (_without("m="), "error"),
    "only-a-datachannel": (
        lambda s: s.split("m=")[0] + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n",
        "error",
    ),
    "no-mid": (_without("a=mid:"), "error"),
    "no-ice-credentials": (_without("a=ice-"), "error"),
    "no-fingerprint": (_without("a=fingerprint"), "error"),
    "no-direction": (_without("a=recvonly"), "error"),
    "port-zero": (lambda s: s.replace("m=video 9 ", "m=video 0 ", 1), "either"),
    "lf-line-ends": (lambda s: s.replace("\r\n", "\n"), "either"),
    "180-candidates": (_candidates(180), "either"),
    "800-candidates": (_candidates(800), "error"),
    "vp8-only": (lambda s: s, "error"),  # made by create_offer(video_mime=...), see below
}


@pytest.mark.parametrize("name", list(MANGLES))
async def test_a_mangled_offer_gets_a_clear_answer_and_the_next_session_works(
    device: tuple[MosquittoBroker, DaemonProcess], viewer_factory: ViewerFactory, name: str
) -> None:
    broker, daemon = device
    mangle, expected = MANGLES[name]
    mallory = await viewer_factory(broker, "mallory", device=DEVICE)
    session = "mangled-1"
    if isinstance(mangle, bytes):
        await mallory.send_raw(mangle)
    else:
        pc = await create_offer([], video_mime="video/VP8" if name == "vp8-only" else None)
        try:
            sdp = mangle(pc.localDescription.sdp)
        finally:
            await pc.close()
        body = json.dumps({"v": 1, "type": "offer", "session": session, "sdp": sdp})
        await mallory.send_raw(body.encode("utf-8", "surrogatepass"))
    reply = await mallory.next_message(timeout=WAIT)
    assert reply["type"] in ("answer", "error"), reply
    if expected != "either":
        assert reply["type"] == expected, reply
    if reply["type"] == "error":
        assert reply["code"] in ("bad-request", "unsupported"), reply
        assert 10 <= len(reply["message"]) < 400, reply
    else:
        await mallory.send({"type": "bye", "session": session})
    await next_good_session_works(broker, mallory)
    await mallory.wait_status(viewers=0, timeout=WAIT)
    assert_well_formed(mallory)
    daemon.assert_no_traceback()
    print(f"{name}: {reply['type']} {reply.get('code', '')} {reply.get('message', '')[:100]}")


# --- floods ------------------------------------------------------------------------------------


async def test_one_viewer_opening_sessions_in_a_loop_holds_at_most_its_share(
    device: tuple[MosquittoBroker, DaemonProcess], viewer_factory: ViewerFactory
) -> None:
    """max_sessions_per_viewer (4): the fifth and later offers replace the oldest session."""
    broker, daemon = device
    mallory = await viewer_factory(broker, "mallory", device=DEVICE)
    watches = []
    for _ in range(7):
        watches.append(await mallory.watch(timeout=WAIT, hello=False))
    replaced = [await w.wait_bye(WAIT) for w in watches[:3]]
    assert {b["reason"] for b in replaced} == {"replaced"}, replaced
    await asyncio.gather(*(w.wait_frames(5, WAIT) for w in watches[3:]))
    status = await mallory.wait_status(viewers=4, timeout=WAIT)
    assert max(s.get("viewers", 0) for s in mallory.statuses) <= 4, mallory.statuses
    for watch in watches[3:]:
        await watch.bye()
    await mallory.wait_status(viewers=0, timeout=WAIT)
    assert status["max_viewers"] == 4
    daemon.assert_no_traceback()


async def test_handshakes_beyond_the_limit_are_busy_and_time_out_to_free_the_slots(
    mosquitto: MosquittoBroker, daemon_factory: DaemonFactory, viewer_factory: ViewerFactory
) -> None:
    """Three viewers offer and never connect; max_handshakes 2: the third is busy.

    After connect_timeout the two are failed (``bye failed``) and a good viewer watches.
    """
    daemon = await daemon_factory(
        mosquitto,
        device=DEVICE,
        config={"webrtc": {"max_viewers": 8, "max_handshakes": 2, "connect_timeout": 3.0}},
    )
    offers = [await create_offer([]) for _ in range(3)]
    try:
        stalled = [await viewer_factory(mosquitto, f"stalled{i}", device=DEVICE) for i in range(3)]
        replies: list[dict[str, Any]] = []
        for viewer, pc in zip(stalled, offers, strict=True):
            sid = new_session_id()
            await viewer.send({"type": "offer", "session": sid, "sdp": pc.localDescription.sdp})
            replies.append(await viewer.next_message(session=sid, timeout=WAIT))
        assert [r["type"] for r in replies] == ["answer", "answer", "error"], replies
        assert replies[2]["code"] == "busy" and "handshake" in replies[2]["message"], replies
        for viewer, reply in zip(stalled[:2], replies[:2], strict=True):
            bye = await viewer.next_message("bye", session=reply["session"], timeout=3.0 + WAIT)
            assert bye["reason"] == "failed", bye
        await stalled[0].wait_status(viewers=0, timeout=WAIT)
    finally:
        for pc in offers:
            await pc.close()
    good = await viewer_factory(mosquitto, "good", device=DEVICE)
    watch = await good.watch(timeout=WAIT)
    await watch.wait_frames(10, WAIT)
    await watch.bye()
    daemon.assert_no_traceback()
