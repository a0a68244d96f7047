"""Signaling races and resource bounds found in review, each pinned by a test.

Real aiortc sessions, a recording fake link (``tests.signaling_harness``); a
"slow broker" is a publish that waits for an event, which makes each
interleaving deterministic.
"""

from __future__ import annotations

import pytest

from peercam.protocol import ErrorCode, IceCandidate, ProtocolError
from peercam.session import MAX_REMOTE_CANDIDATES
from tests.signaling_harness import Harness

pytestmark = pytest.mark.timeout(60)


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
