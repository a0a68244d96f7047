"""Publishing the hub's stream once to a selective forwarding unit (SFU).

Peer-to-peer costs the Pi one upload per viewer.  Past ``[relay]
p2p_viewers`` (or always), viewers are sent to an SFU instead and the
device publishes there once: the same encoded packets, never re-encoded.

- ``Publisher`` is what the rest of the daemon sees; ``janus.JanusPublisher``
  speaks to a Janus VideoRoom.  A WHIP publisher (mediamtx, LiveKit) would be
  a second implementation of the same interface.
- ``director.RelayDirector`` decides who watches where, keeps the relayed
  viewers' leases and starts or stops the publisher with them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol


class PublishState(StrEnum):
    IDLE = "idle"  # nobody watches through the SFU: nothing is sent
    CONNECTING = "connecting"  # reaching the SFU, joining, negotiating
    PUBLISHING = "publishing"  # media flows to the SFU
    FAULT = "fault"  # the last attempt failed; retrying with backoff (see ``fault``)


class Publisher(Protocol):
    """One outgoing stream to an SFU, kept up while ``wanted``."""

    state: PublishState
    #: Why the last attempt failed, for ``status.faults`` (None when all is well).
    fault: str | None

    def set_wanted(self, wanted: bool) -> None:
        """Start publishing (and keep at it, through the SFU's restarts) or stop."""

    def where(self) -> dict[str, object]:
        """What a viewer needs to subscribe (``welcome.relay`` / ``status.relay``)."""

    async def close(self) -> None: ...
