"""How often one consumer's IDR requests (join, falling behind, PLI/FIR) may reach the encoder.

With encode-once fan-out, an IDR asked for by one viewer goes to *every*
viewer: it is several times the size of a P frame, so it costs all of them
bitrate and, under a VBV-capped bitrate, the quality of the P frames that
follow.  A viewer whose link is simply too slow for the stream asks again
and again (its IDRs are lost too) and, at one honoured request per 0.5 s,
put every viewer on ~1.9 IDRs a second instead of 0.5 (measured with
``bench.latency``'s throttled viewer; with this back-off: ~0.7).

So each consumer (``hub.Subscription``) backs off, whatever the reason it
asks (its viewer's PLI/FIR, its join, its falling behind): the first request after a quiet spell is
honoured at once, each further one only after a gap that doubles (0.5, 1,
2, 4, 8 s), and the gap returns to 0.5 s after ``reset_after`` seconds
without an honoured request.  An occasional loss still gets an IDR within
one round trip; a hopeless link costs the others at most one IDR per 8 s.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class KeyframeRequestLimiter:
    """Decides which of one viewer's PLI/FIR become keyframe requests."""

    base_gap: float = 0.5
    max_gap: float = 8.0
    reset_after: float = 10.0
    gap: float = 0.5
    last: float | None = None

    def allow(self, now: float) -> bool:
        """True when a request arriving at ``now`` (monotonic seconds) should be honoured."""
        if self.last is not None and now - self.last < self.gap:
            return False
        if self.last is None or now - self.last >= self.reset_after:
            self.gap = self.base_gap
        else:
            self.gap = min(self.gap * 2, self.max_gap)
        self.last = now
        return True
