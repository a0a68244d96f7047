"""aiortc tracks that send pre-encoded media straight from a hub subscription.

``recv()`` returns an ``av.Packet`` instead of a frame: aiortc then only
packetizes it (H.264 STAP-A/FU-A, or one Opus packet per RTP packet) and
never runs an encoder.
"""

from __future__ import annotations

import logging

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .hub import Subscription, SubscriptionClosed
from .media import TIME_BASE

log = logging.getLogger("peercam.tracks")


class PassthroughTrack(MediaStreamTrack):
    """Sends the access units of one hub subscription, untouched."""

    def __init__(self, kind: str, subscription: Subscription) -> None:
        super().__init__()
        self.kind = kind
        self._sub = subscription

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self._sub.get()
        except SubscriptionClosed:
            self.stop()
            raise MediaStreamError from None
        packet = av.Packet(frame.data)
        packet.pts = frame.pts
        packet.dts = frame.pts
        packet.time_base = TIME_BASE
        return packet

    @property
    def subscription(self) -> Subscription:
        return self._sub

    def stop(self) -> None:
        super().stop()
        self._sub.close()
