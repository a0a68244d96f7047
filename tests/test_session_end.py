"""How a session ends decides the ``bye`` reason the viewer reads.

Consent expiry (RFC 7675: the viewer's network went away) is a failure,
``bye failed``; a viewer closing its peer connection (DTLS close_notify) is
a hang-up.  aiortc reports both as connection state "closed".  aioice's
consent timing is shortened here (module constants) so the expiry takes a
second, not thirty.
"""

from __future__ import annotations

import asyncio
import logging

import aioice.ice
import pytest
from aiortc import RTCPeerConnection

from peercam import session as session_module
from tests.signaling_harness import Harness, connected_viewer

pytestmark = pytest.mark.timeout(60)


def freeze(pc: RTCPeerConnection) -> None:
    """Close the viewer's UDP sockets under aiortc: its network is gone, nothing is said."""
    for transceiver in pc.getTransceivers():
        for protocol in transceiver.receiver.transport.transport._connection._protocols:
            protocol.transport.close()


async def test_consent_expiry_is_bye_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    h = Harness()
    signaling = h.start()
    try:
        pc = await connected_viewer(h, "alice", "alice-one1")
        freeze(pc)
        bye = await h.reply("alice", "alice-one1", types=("bye",), timeout=20)
        assert bye["reason"] == "failed", bye
        assert not signaling.sessions
    finally:
        await h.close()


async def test_a_viewer_closing_its_peer_connection_is_bye_hangup() -> None:
    h = Harness()
    signaling = h.start()
    try:
        pc = await connected_viewer(h, "alice", "alice-one1")
        await pc.close()
        bye = await h.reply("alice", "alice-one1", types=("bye",), timeout=20)
        assert bye["reason"] == "hangup", bye
        assert not signaling.sessions
    finally:
        await h.close()


async def test_a_close_stuck_in_aiortc_still_shuts_the_sessions_sockets(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """aiortc's close() hangs (say, a sender that never stops): the ICE sockets close anyway."""
    monkeypatch.setattr(session_module, "PC_CLOSE_TIMEOUT", 0.3)
    h = Harness()
    signaling = h.start()
    try:
        await connected_viewer(h, "alice", "alice-one1")
        (session,) = signaling.sessions.values()
        connections = {
            id(
                t.receiver.transport.transport._connection
            ): t.receiver.transport.transport._connection
            for t in session._pc.getTransceivers()
        }
        sockets = [p.transport for c in connections.values() for p in c._protocols]
        assert sockets and not any(s.is_closing() for s in sockets)
        stuck = asyncio.Event()

        async def never_stops() -> None:
            stuck.set()
            await asyncio.Event().wait()

        monkeypatch.setattr(session._pc.getTransceivers()[0], "stop", never_stops)
        with caplog.at_level(logging.WARNING, logger="peercam.session"):
            await session.close()
        assert stuck.is_set()
        assert all(s.is_closing() for s in sockets), sockets
        assert all(not c._protocols for c in connections.values())
        assert "did not close within 0.3 s; shutting its sockets directly" in caplog.text
    finally:
        await h.close()
