"""aiortc tracks that send pre-encoded media straight from a hub subscription.

``recv()`` returns an ``av.Packet`` instead of a frame: aiortc then only
packetizes it (H.264 STAP-A/FU-A, or one Opus packet per RTP packet) and
never runs an encoder.

A video track can move between the main stream and the substream
(``switch_to``): the new subscription starts taking frames at once and the
track keeps sending the old stream until the new one delivers its IDR, so the
picture never stops for longer than the new encoder takes to make that IDR.
Timestamps continue across the switch (the two encoders have their own
clocks), so the viewer's jitter buffer sees one stream whose size changed at
an IDR, which every decoder handles.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .hub import Subscription, SubscriptionClosed
from .media import TIME_BASE, EncodedFrame

log = logging.getLogger("peercam.tracks")


class PassthroughTrack(MediaStreamTrack):
    """Sends the access units of one hub subscription (or, after a switch, another), untouched."""

    def __init__(
        self,
        kind: str,
        subscription: Subscription,
        *,
        frame_interval_us: int = 33_333,
        on_switched: Callable[[Subscription], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = kind
        self._sub = subscription
        self._pending: Subscription | None = None
        self._changed = asyncio.Event()
        self._interval = frame_interval_us
        self._offset = 0  # added to the current stream's pts
        self._last_pts: int | None = None
        self._on_switched = on_switched
        subscription.notify = self._changed

    def switch_to(self, subscription: Subscription) -> None:
        """Send ``subscription`` from its first IDR on; until then the current one goes on."""
        if self._pending is not None:
            self._pending.close()
        self._pending = subscription
        subscription.notify = self._changed
        subscription.activate()  # takes frames (from its next IDR) and asks for one
        self._changed.set()

    def cancel_switch(self) -> None:
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    @property
    def switching(self) -> bool:
        return self._pending is not None

    async def _next(self) -> EncodedFrame:
        while True:
            pending = self._pending
            if pending is not None and (pending.queued or pending.closed):
                self._pending = None
                if pending.closed:
                    continue  # the new stream went away (its hub closed): stay
                old, self._sub = self._sub, pending
                old.close()
                frame = await pending.get()
                if self._last_pts is not None:
                    self._offset = self._last_pts + self._interval - frame.pts
                if self._on_switched is not None:
                    self._on_switched(pending)
                return frame
            if pending is None or self._sub.queued or self._sub.closed:
                return await self._sub.get()
            self._changed.clear()
            if not (pending.queued or pending.closed or self._sub.queued or self._sub.closed):
                await self._changed.wait()

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self._next()
        except SubscriptionClosed:
            self.stop()
            raise MediaStreamError from None
        pts = frame.pts + self._offset
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        packet = av.Packet(frame.data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = TIME_BASE
        return packet

    @property
    def subscription(self) -> Subscription:
        """The subscription being sent now."""
        return self._sub

    def stop(self) -> None:
        super().stop()
        self._sub.close()
        if self._pending is not None:
            self._pending.close()
            self._pending = None
