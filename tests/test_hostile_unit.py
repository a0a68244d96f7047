"""Hostile input at the signaling edge, property-based: sequences of messages and mangled SDP.

Real ``Signaling`` and real aiortc sessions behind a recording fake link
(``tests.signaling_harness``).  Whatever a viewer sends, signaling raises
nothing, answers only with well-formed messages (an ``error`` never with
code ``internal``: that would be a bug we did not foresee), logs no
traceback, holds no session for a refused offer, and the next good session
works.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peercam.config import WebRtcConfig
from peercam.ice import restrict_host_addresses
from peercam.protocol import ErrorCode
from tests.signaling_harness import Harness
from tests.test_protocol_fuzz import protocol_messages
from tests.viewer import create_offer

pytestmark = pytest.mark.timeout(300)

CODES = {str(c) for c in ErrorCode} - {str(ErrorCode.INTERNAL)}
REPLY_TYPES = {"welcome", "answer", "error", "bye"}

_OFFER_SDP: list[str] = []


async def real_offer_sdp() -> str:
    """One real aiortc offer (video recvonly, audio recvonly), made once per test process."""
    if not _OFFER_SDP:
        pc = await create_offer([], audio=True)
        _OFFER_SDP.append(pc.localDescription.sdp)
        await pc.close()
    return _OFFER_SDP[0]


def run(coro: Any) -> Any:
    """Hypothesis drives sync tests: one fresh event loop per example."""
    restrict_host_addresses(["127.0.0.1/32"])
    return asyncio.run(coro)


class ErrorLog(logging.Handler):
    """Collects ERROR records (log.exception included) of the peercam loggers.

    Also the session's safety net ("aiortc could not answer"): it keeps the
    daemon sound, but an offer reaching it is one ``offer_problem`` missed.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR or "could not answer" in record.getMessage():
            self.records.append(record)

    LOGGERS = ("peercam", "asyncio")  # asyncio: "Task exception was never retrieved"

    def __enter__(self) -> ErrorLog:
        for name in self.LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.LOGGERS:
            logging.getLogger(name).removeHandler(self)


async def settle(h: Harness) -> None:
    """Wait (bounded) until signaling has handled everything it was sent."""
    assert h.signaling is not None
    for _ in range(1000):
        busy = [i for i in h.signaling._inboxes.values() if i.task and not i.task.done()]
        if not busy and not h.signaling._tasks:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("signaling never went idle")


def check_replies(h: Harness) -> None:
    for viewer, message in h.sent:
        if viewer.endswith("/status"):
            continue
        assert message.get("v") == 1, message
        assert message.get("type") in REPLY_TYPES, message
        if message["type"] == "error":
            assert message.get("code") in CODES, message
            assert isinstance(message.get("message"), str) and message["message"], message


async def good_session_works(h: Harness, viewer: str = "goodviewer") -> None:
    h.send(viewer, {"type": "hello", "session": "good-session-1"})
    assert (await h.reply(viewer, "good-session-1", ("welcome", "error")))["type"] == "welcome"
    await h.offer(viewer, "good-session-1")
    answer = await h.reply(viewer, "good-session-1")
    assert answer["type"] == "answer", answer


# --- sequences of messages -----------------------------------------------------------------

payloads = st.one_of(
    st.binary(max_size=300),
    protocol_messages().map(lambda m: json.dumps(m, allow_nan=True).encode("utf-8", "replace")),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(st.tuples(st.sampled_from(["mallory", "trudy"]), payloads), max_size=25))
def test_any_message_sequence_leaves_signaling_sound(
    sequence: list[tuple[str, bytes]],
) -> None:
    async def scenario() -> None:
        h = Harness(WebRtcConfig(max_viewers=4, connect_timeout=5))
        h.start()
        try:
            with ErrorLog() as errors:
                for viewer, payload in sequence:
                    h.send_raw(viewer, payload)
                await settle(h)
                check_replies(h)
                await good_session_works(h)
            assert not errors.records, [r.getMessage() for r in errors.records]
        finally:
            await h.close()

    run(scenario())


# --- mangled SDP ----------------------------------------------------------------------------


def mangle(sdp: str, data: st.DataObject) -> str:
    lines = sdp.split("\r\n")
    how = data.draw(
        st.sampled_from(
            [
                "truncate",
                "drop-lines",
                "duplicate-lines",
                "junk-lines",
                "edit-line",
                "no-m-lines",
                "only-application",
                "huge",
                "surrogates",
                "candidates",
                "lf-only",
            ]
        ),
        label="how",
    )
    if how == "truncate":
        return sdp[: data.draw(st.integers(0, len(sdp)), label="at")]
    if how == "drop-lines":
        drop = data.draw(st.sets(st.integers(0, len(lines) - 1), max_size=8), label="drop")
        return "\r\n".join(line for i, line in enumerate(lines) if i not in drop)
    if how == "duplicate-lines":
        dup = data.draw(st.lists(st.integers(0, len(lines) - 1), max_size=6), label="dup")
        for i in sorted(dup, reverse=True):
            lines.insert(i, lines[i])
        return "\r\n".join(lines)
    if how == "junk-lines":
        junk = data.draw(st.lists(st.text(max_size=60), min_size=1, max_size=6), label="junk")
        at = data.draw(st.integers(0, len(lines)), label="at")
        return "\r\n".join(lines[:at] + junk + lines[at:])
    if how == "edit-line":
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        head = lines[i].split(" ")
        j = data.draw(st.integers(0, len(head) - 1), label="field")
        head[j] = data.draw(
            st.one_of(st.text(max_size=20), st.integers(-(2**40), 2**40).map(str)), label="value"
        )
        lines[i] = " ".join(head)
        return "\r\n".join(lines)
    if how == "no-m-lines":
        return "\r\n".join(line for line in lines if not line.startswith("m="))
    if how == "only-application":
        head = sdp.split("m=")[0]
        return head + "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n"
    if how == "huge":
        pad = "a=x-pad:" + "p" * 200 + "\r\n"
        return sdp + pad * ((59_000 - len(sdp)) // len(pad))
    if how == "surrogates":
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        lines[i] += "\udcff\ud800"
        return "\r\n".join(lines)
    if how == "candidates":
        n = data.draw(st.integers(150, 900), label="n")
        extra = [
            f"a=candidate:{k} 1 udp 2130706431 127.0.{k // 200}.{k % 200 + 1} 9 typ host"
            for k in range(n)
        ]
        return sdp + "\r\n".join(extra) + "\r\n"
    assert how == "lf-only"
    return sdp.replace("\r\n", "\n")


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.data())
def test_mangled_offers_get_an_answer_or_a_clear_error(data: st.DataObject) -> None:
    async def scenario() -> None:
        sdp = mangle(await real_offer_sdp(), data)
        h = Harness(WebRtcConfig(max_viewers=2, connect_timeout=5))
        signaling = h.start()
        with ErrorLog() as errors:
            try:
                payload = json.dumps({"v": 1, "type": "offer", "session": "mangled-1", "sdp": sdp})
                h.send_raw("mallory", payload.encode())
                reply = await h.reply("mallory", "mangled-1", ("answer", "error"), timeout=30)
                await settle(h)
                check_replies(h)
                if reply["type"] == "error":
                    assert reply["code"] in ("bad-request", "unsupported"), reply
                    assert ("mallory", "mangled-1") not in signaling.sessions
                    assert len(reply["message"]) < 400, reply
                await good_session_works(h)
            finally:
                await h.close()
            gc.collect()  # so that asyncio reports exceptions no task retrieved
        assert not errors.records, [r.getMessage() for r in errors.records]

    run(scenario())


def test_candidate_lines_of_any_shape_are_refused_cleanly() -> None:
    """Trickled candidates: odd strings, mids and indexes, on a live negotiating session."""
    lines = [
        "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
        "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host",
        "candidate:1 1 udp x 127.0.0.1 9 typ host",
        "candidate:1 1 udp 1 127.0.0.1 99999999 typ host",
        "candidate:1 1 udp 1 not-an-ip 9 typ host",
        "candidate:1 1 udp 1 zzz.local 9 typ host",
        "candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype nonsense",
        "candidate:1 1 udp 1 127.0.0.1 9 typ relay raddr 1.2.3.4 rport x",
        "candidate:1",
        "candidate:" + "9" * 900,
        "\x00\x01\x02",
        "\udcff",
    ]
    mids = [("0", 0), (None, 7), ("nope", None), ("0", 2**40)]

    async def scenario() -> None:
        h = Harness()
        h.start()
        try:
            with ErrorLog() as errors:
                await h.offer("mallory", "session-one")
                assert (await h.reply("mallory", "session-one"))["type"] == "answer"
                for line in lines:
                    for mid, index in mids:
                        candidate = {"candidate": line, "sdpMid": mid, "sdpMLineIndex": index}
                        h.send(
                            "mallory",
                            {"type": "candidate", "session": "session-one", "candidate": candidate},
                        )
                    await settle(h)
                h.send(
                    "mallory", {"type": "candidate", "session": "session-one", "candidate": None}
                )
                await settle(h)
                check_replies(h)
                await good_session_works(h)
            assert not errors.records, [r.getMessage() for r in errors.records]
            codes = {m.get("code") for m in h.to("mallory") if m["type"] == "error"}
            assert codes <= {"bad-request"}, codes
            assert all(
                re.search(r"candidate", m["message"], re.I)
                for m in h.to("mallory")
                if m["type"] == "error"
            )
        finally:
            await h.close()

    run(scenario())


@pytest.mark.parametrize("drop", ["a=fingerprint:", "a=setup:"])
def test_an_offer_without_dtls_parameters_is_refused_or_answered_cleanly(drop: str) -> None:
    """aiortc answers an offer without fingerprint, then asserts in a task when connecting."""

    async def scenario() -> None:
        sdp = "\r\n".join(
            x for x in (await real_offer_sdp()).split("\r\n") if not x.startswith(drop)
        )
        h = Harness(WebRtcConfig(connect_timeout=0.5))
        h.start()
        with ErrorLog() as errors:
            try:
                h.send("mallory", {"type": "offer", "session": "mangled-1", "sdp": sdp})
                reply = await h.reply("mallory", "mangled-1")
                if drop == "a=fingerprint:":
                    assert reply["type"] == "error" and "fingerprint" in reply["message"], reply
                else:
                    # No a=setup: aiortc picks a role; the connect timeout ends it.
                    await h.reply("mallory", "mangled-1", types=("bye", "error"))
                await good_session_works(h)
            finally:
                await h.close()
            gc.collect()
        assert not errors.records, [r.getMessage() for r in errors.records]

    run(scenario())
