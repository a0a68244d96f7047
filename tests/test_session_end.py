"""How a session ends decides the ``bye`` reason the viewer reads.

Consent expiry (RFC 7675: the viewer's network went away) is a failure,
``bye failed``; a viewer closing its peer connection (DTLS close_notify) is
a hang-up.  aiortc reports both as connection state "closed".  aioice's
consent timing is shortened here (module constants) so the expiry takes a
second, not thirty.
"""

from __future__ import annotations

import aioice.ice
import pytest
from aiortc import RTCPeerConnection

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
