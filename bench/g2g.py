"""Glass-to-glass for Python viewers: read the capture-time barcode from decoded frames.

Capture time is what the test pattern stamps (``time.time_ns() // 1000``
just before the picture is rendered and encoded); the viewer compares it
with its own ``time.time()`` when aiortc hands it the decoded picture.  Same
machine, same clock.  aiortc's jitter buffer releases a frame only when the
first packet of the *next* frame arrives, so a Python viewer's figure
includes about one frame interval (33 ms at 30 fps) that a browser does not
add.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from peercam.sources import timecode


def luma(frame: Any) -> np.ndarray:
    """The Y plane of a decoded yuv420p frame as a (height, width) view, no copy."""
    plane = frame.planes[0]
    rows = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)
    return rows[:, : frame.width]


@dataclass
class LatencyMeter:
    """A ``Viewer.frame_hook`` that records capture->decoded latency (ms) per session id."""

    samples: dict[str, list[float]] = field(default_factory=dict)
    unreadable: int = 0
    keyframes: dict[str, int] = field(default_factory=dict)
    recording: bool = True

    def __call__(self, session: Any, frame: Any) -> None:
        if getattr(frame, "key_frame", False):
            self.keyframes[session.id] = self.keyframes.get(session.id, 0) + 1
        if not self.recording:
            return
        now_us = time.time_ns() // 1000
        value = timecode.read(luma(frame))
        if value is None:
            self.unreadable += 1
            return
        captured = timecode.unwrap(value, now_us)
        self.samples.setdefault(session.id, []).append((now_us - captured) / 1000)

    def take(self) -> dict[str, list[float]]:
        out, self.samples = self.samples, {}
        return out
