"""Which of the two streams one viewer gets: the viewer's choice, or ``auto``.

``auto`` watches what the viewer's receiver reports about the main stream and
moves it to the substream when the main one does not fit its link:

- **loss**: RTCP receiver reports with ``fraction_lost`` at or above 10 % in
  two reports running (a 600 kbit/s link under a 2 Mbit/s stream loses most
  packets);
- **bandwidth**: a REMB estimate that *fell* (receivers lower it only when
  they see congestion) to below 90 % of what the main stream actually sends,
  twice running.  An estimate that is low but rising is a receiver still
  ramping up, not a congested link, and is ignored.

Back up is a probe: REMB cannot say that a link now takes more than the
substream (receivers cap their estimate near 1.5 times what they receive), so after
``probe_after`` seconds on the substream without loss the viewer tries the
main stream again.  A probe that fails (down again within ``settle`` s)
doubles the wait, up to ``max_probe_after``; a probe that holds resets it.
For ``settle`` s after going up only loss counts (the estimate is still the
substream's).  Each switch happens at an IDR of the new stream (tracks.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class Quality(StrEnum):
    """What a viewer asks for (``quality`` in the offer or a ``quality`` message)."""

    AUTO = "auto"
    HIGH = "high"  # the main stream, whatever the link
    LOW = "low"  # the substream


class Stream(StrEnum):
    MAIN = "main"
    SUB = "sub"


class QualityPolicy:
    """Pure logic: feed it reports, it says when to switch (``auto`` only)."""

    def __init__(
        self,
        *,
        probe_after: float = 10.0,
        max_probe_after: float = 120.0,
        settle: float = 10.0,
        loss_down: float = 0.10,
        loss_ok: float = 0.02,
        estimate_margin: float = 0.9,
        reports_down: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_probe_after = probe_after
        self.probe_after = probe_after
        self.max_probe_after = max_probe_after
        self.settle = settle
        self.loss_down = loss_down
        self.loss_ok = loss_ok
        self.estimate_margin = estimate_margin
        self.reports_down = reports_down
        self._clock = clock
        self.stream = Stream.MAIN
        self.switches = 0
        self._since = clock()
        self._lossy = 0
        self._falling = 0
        self._last_estimate: int | None = None
        self._last_loss: float | None = None
        self._clean = 0  # loss reports in a row under loss_ok (on the substream)
        self._probing = False  # on main because of a probe (not yet settled)

    def moved(self, stream: Stream) -> None:
        """The session now sends ``stream`` (its decision, or the viewer's choice)."""
        now = self._clock()
        if stream is self.stream:
            return
        if stream is Stream.SUB and self._probing and now - self._since < self.settle:
            # the main stream did not hold: the next probe waits longer
            self.probe_after = min(self.probe_after * 2, self.max_probe_after)
        elif stream is Stream.SUB:
            self.probe_after = self.base_probe_after
        self._probing = stream is Stream.MAIN and self.stream is Stream.SUB
        self.stream = stream
        self.switches += 1
        self._since = now
        self._lossy = self._falling = self._clean = 0
        self._last_estimate = None

    def on_loss(self, fraction: float) -> Stream | None:
        """A receiver report's fraction lost (0..1); returns the stream to move to, if any."""
        self._last_loss = fraction
        if self.stream is Stream.MAIN:
            self._lossy = self._lossy + 1 if fraction >= self.loss_down else 0
            if self._lossy >= self.reports_down:
                return Stream.SUB
            return None
        self._clean = self._clean + 1 if fraction < self.loss_ok else 0
        return self._probe()

    def on_estimate(self, bps: int, main_rate: float | None) -> Stream | None:
        """A REMB estimate, and what the main stream sends now (bit/s, None = unknown)."""
        last, self._last_estimate = self._last_estimate, bps
        if self.stream is not Stream.MAIN:
            return self._probe()
        if self._probing and self._clock() - self._since < self.settle:
            return None  # just probed up: the estimate still describes the substream
        falling = last is not None and bps < last
        too_low = main_rate is not None and bps < self.estimate_margin * main_rate
        self._falling = self._falling + 1 if falling and too_low else 0
        if self._falling >= self.reports_down:
            return Stream.SUB
        return None

    def _probe(self) -> Stream | None:
        if self._clock() - self._since < self.probe_after:
            return None
        if self._clean >= self.reports_down:
            return Stream.MAIN
        return None
