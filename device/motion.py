"""Motion detection on a small luma picture: the picamera2 way, cheap enough for a Pi.

Each picture (the ``lores`` stream's Y plane on a Pi, the test pattern's
scene elsewhere, about 160 px wide, a few per second) is compared with the
previous one: the share of watched pixels whose brightness changed by more
than ``threshold`` decides whether this instant moves.  Differences are
taken in 16 bits (uint8 arithmetic wraps at 256, a bug in picamera2's own
example).

One event per visit, not a flood: motion *starts* on the first moving
picture at least ``min_interval`` s after the previous start, and *ends*
after ``quiet`` s without a moving picture.  Pure logic with an injectable
clock; the daemon feeds it and publishes what it says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from .config import MotionConfig, MotionZone

log = logging.getLogger("peercam.motion")


def zone_mask(shape: tuple[int, int], zones: list[MotionZone]) -> np.ndarray:
    """Boolean mask of the watched pixels of a ``shape`` picture (all of it without zones)."""
    height, width = shape
    if not zones:
        return np.ones(shape, dtype=bool)
    mask = np.zeros(shape, dtype=bool)
    for z in zones:
        x0, y0 = int(z.x * width), int(z.y * height)
        x1 = max(x0 + 1, round((z.x + z.w) * width))
        y1 = max(y0 + 1, round((z.y + z.h) * height))
        mask[y0:y1, x0:x1] = True
    return mask


class MotionDetector:
    """Feeds on small pictures; calls ``on_start()``, ``on_moving()`` and ``on_end(seconds)``."""

    def __init__(
        self,
        config: MotionConfig,
        *,
        on_start: Callable[[], None],
        on_end: Callable[[float], None],
        on_moving: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._on_start = on_start
        self._on_end = on_end
        self._on_moving = on_moving
        self._clock = clock
        self._previous: np.ndarray | None = None
        self._previous_at = float("-inf")
        #: Pictures further apart than this are not compared (the camera restarted).
        self._max_gap = max(2.0, 5.0 / config.fps)
        self._mask: np.ndarray | None = None
        self._watched = 1
        self.active = False
        self._started = float("-inf")
        self._last_moving = float("-inf")
        self.pictures = 0
        self.events = 0
        self.suppressed = 0
        #: Percent of watched pixels that moved in the last picture (diagnostics, tuning).
        self.level = 0.0

    def feed(self, picture: np.ndarray) -> bool:
        """One small luma picture (2-D uint8); returns whether it moved."""
        self.pictures += 1
        now = self._clock()
        previous, self._previous = self._previous, picture
        gap, self._previous_at = now - self._previous_at, now
        if previous is None or previous.shape != picture.shape or gap > self._max_gap:
            # first picture, or after a camera restart / stall: a new baseline, not motion
            self._mask = zone_mask(picture.shape, self.config.zones)
            self._watched = max(1, int(self._mask.sum()))
            return False
        diff = np.abs(picture.astype(np.int16) - previous.astype(np.int16))
        moved = np.count_nonzero((diff > self.config.threshold) & self._mask)
        self.level = 100.0 * moved / self._watched
        moving = self.level >= self.config.sensitivity
        if moving:
            self._last_moving = now
        if self.active:
            if moving:
                self._on_moving()
            elif now - self._last_moving >= self.config.quiet:
                self.active = False
                self._on_end(now - self._started)
        elif moving:
            if now - self._started >= self.config.min_interval:
                self.active = True
                self._started = now
                self.events += 1
                self._on_start()
            else:
                self.suppressed += 1
        return moving
