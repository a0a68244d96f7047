"""Send a viewer no more than its link takes: a token bucket under aiortc, per session.

aiortc sends each frame's RTP packets back to back and answers every NACK
with a retransmission, whatever the link.  A viewer on a slow link then
costs the device's uplink several times what it receives: the full stream
pushed into a link that drops most of it, plus retransmissions of what it
dropped (measured before this: 8.0 Mbit/s uploaded for 2.7 received by two
viewers, one of them on 600 kbit/s).  ``LinkPacer`` sits in front of the
session's DTLS transport:

- media leaves at most at ``rate``: the viewer's REMB estimate times
  ``headroom`` (2.5, libwebrtc's pacing factor: an IDR leaves in a fraction
  of its frame interval on a link that takes it), but never below what the stream being sent needs
  (``floor``: its measured bitrate with a margin).  Which stream fits the
  link is the quality policy's choice (quality.py); the pacer spreads an
  IDR over time instead of bursting it into a small router queue, and
  keeps estimates that collapse (a receiver whose estimator saw a gap)
  from starving a stream that fits.  A sender that has to wait stops
  reading its hub subscription, whose bounded queue then skips to the next
  IDR (hub.py): the device drops frames instead of the network dropping
  packets;
- a retransmission is sent only while the bucket has room for it right now
  and for a packet sent at most ``max_rtx_age`` ago (an older one is late
  for a live picture, and one from before a stream switch is useless);
- RTCP is never held back.

Before the first estimate nothing is paced (a viewer's estimator starts
high and settles on what it receives within seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from aiortc.rtp import is_rtcp


class LinkPacer:
    """One session's sending budget (pure bookkeeping plus an awaitable ``send``)."""

    FLOOR = 150_000  # bit/s: below this even the substream would not play

    def __init__(
        self,
        *,
        headroom: float = 2.5,
        burst_seconds: float = 0.05,
        min_burst: int = 6_000,
        max_rtx_age: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.headroom = headroom
        self.burst_seconds = burst_seconds
        self.min_burst = min_burst
        self.max_rtx_age = max_rtx_age
        self._clock = clock
        self.estimate: float | None = None  # bit/s, REMB times headroom
        self.floor: float | None = None  # bit/s the stream being sent needs
        self._tokens = 0.0  # bytes
        self._at = clock()
        self._lock = asyncio.Lock()
        self._sent_at: OrderedDict[int, float] = OrderedDict()  # RTP seq -> time (media)
        self.bytes_sent = 0
        self.rtx_sent = 0
        self.rtx_skipped = 0
        self.waited = 0.0  # seconds media spent waiting for the budget

    # --- the budget ---------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        """Bit/s media may leave at now; None = not paced (no estimate yet)."""
        if self.estimate is None:
            return None
        return max(self.FLOOR, self.estimate, self.floor or 0)

    def on_estimate(self, bps: int, stream_bps: float | None) -> None:
        """A REMB estimate from the viewer, and what the stream being sent uses (bit/s)."""
        first = self.estimate is None
        self.estimate = bps * self.headroom
        if stream_bps is not None:
            self.floor = stream_bps * 1.25
        if first:
            self._tokens = self._burst()
            self._at = self._clock()

    def on_loss(self, fraction: float) -> None:
        """A receiver report: above 10 % loss the link is overfull; back off (as GCC does)."""
        if self.estimate is not None and fraction > 0.10:
            self.estimate = max(self.FLOOR, self.estimate * (1 - 0.5 * fraction))

    def _burst(self) -> float:
        return max(self.min_burst, (self.rate or 0) / 8 * self.burst_seconds)

    def _refill(self) -> None:
        now = self._clock()
        rate = self.rate
        if rate is not None:
            self._tokens = min(self._burst(), self._tokens + (now - self._at) * rate / 8)
        self._at = now

    # --- sending ------------------------------------------------------------------

    async def send(self, data: bytes, forward: Callable[[bytes], Awaitable[None]]) -> None:
        """Send ``data`` (plain RTP/RTCP) through ``forward`` when the budget allows."""
        if is_rtcp(data):
            await forward(data)
            return
        async with self._lock:
            self._refill()
            rate = self.rate
            if rate is not None:
                if self._tokens < len(data):
                    wait = (len(data) - self._tokens) / (rate / 8)
                    self.waited += wait
                    await asyncio.sleep(wait)
                    self._refill()
                self._tokens -= len(data)
            self.bytes_sent += len(data)
            if len(data) >= 4:
                seq = int.from_bytes(data[2:4], "big")
                self._sent_at[seq] = self._clock()
                self._sent_at.move_to_end(seq)
                while len(self._sent_at) > 4096:
                    self._sent_at.popitem(last=False)
        await forward(data)

    def may_retransmit(self, seq: int) -> bool:
        """Whether a NACKed packet is worth its bytes now."""
        sent = self._sent_at.get(seq)
        self._refill()
        ok = (
            sent is not None
            and self._clock() - sent <= self.max_rtx_age
            and (self.rate is None or (self._tokens > 0 and not self._lock.locked()))
        )
        if ok:
            self.rtx_sent += 1
        else:
            self.rtx_skipped += 1
        return ok

    def forget_before_switch(self) -> None:
        """The stream changed: what was sent before is no use to retransmit."""
        self._sent_at.clear()
