"""Follow the slowest viewer's bandwidth estimate with the one shared encoder.

Every viewer gets the same bytes, so the encoder's bitrate must suit the
viewer with the least bandwidth: the lowest REMB (receiver estimated maximum
bitrate, RTCP PSFB APP) among the current viewers.  ``BitrateGovernor`` turns
those estimates into encoder bitrates within ``[min_bps, max_bps]``:

- video gets ``headroom`` (85 %) of the estimate, leaving room for audio,
  RTP/SRTP overhead and retransmissions;
- a drop is applied at once (at most once a second): a congested viewer
  should not wait;
- a rise waits ``raise_gap`` seconds since the last change and grows by at
  most half the current rate per step: estimates climb in steps too, and an
  IDR at a sudden high rate is what congests a link again;
- changes under 10 % are ignored (no ioctl storm for noise);
- a change held back by those gaps is due again after ``retry_after()``
  seconds: the caller asks again then, so a rise happens even when no new
  estimate arrives (the slow viewer left; the others send none);
- no estimate at all (no viewer, or viewers that send no REMB) means the
  configured maximum.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class BitrateGovernor:
    """Decides the encoder bitrate from the lowest viewer estimate; pure logic."""

    def __init__(
        self,
        *,
        max_bps: int,
        min_bps: int,
        headroom: float = 0.85,
        lower_gap: float = 1.0,
        raise_gap: float = 5.0,
        max_raise: float = 0.5,
        hysteresis: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < min_bps <= max_bps:
            raise ValueError(f"need 0 < min_bps <= max_bps, got {min_bps}, {max_bps}")
        self.max_bps = max_bps
        self.min_bps = min_bps
        self.headroom = headroom
        self.lower_gap = lower_gap
        self.raise_gap = raise_gap
        self.max_raise = max_raise
        self.hysteresis = hysteresis
        self._clock = clock
        self.current = max_bps
        self._changed_at = -1e9
        self.estimate: int | None = None

    def target(self, estimate: int | None) -> int:
        """The bitrate ``estimate`` (bit/s, None = unknown) asks for, within bounds."""
        if estimate is None:
            return self.max_bps
        return max(self.min_bps, min(self.max_bps, int(estimate * self.headroom)))

    def update(self, estimate: int | None) -> int | None:
        """Feed the lowest current estimate; returns a new bitrate to apply, or None."""
        self.estimate = estimate
        now = self._clock()
        want = self.target(estimate)
        if abs(want - self.current) < self.hysteresis * self.current:
            return None
        if want < self.current:
            if now - self._changed_at < self.lower_gap:
                return None
        else:
            if now - self._changed_at < self.raise_gap:
                return None
            want = min(want, int(self.current * (1 + self.max_raise)))
        self.current = want
        self._changed_at = now
        return want

    def retry_after(self) -> float | None:
        """Seconds until the last estimate may move the bitrate further; None: nothing due."""
        want = self.target(self.estimate)
        if abs(want - self.current) < self.hysteresis * self.current:
            return None
        gap = self.lower_gap if want < self.current else self.raise_gap
        return max(0.0, self._changed_at + gap - self._clock())

    def reset(self) -> None:
        """A fresh encoder starts at the maximum again (it was opened with it)."""
        self.current = self.max_bps
        self._changed_at = -1e9
