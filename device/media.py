"""Encoded media as it travels from a source through the hub to the sessions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Protocol

#: Every timestamp inside peercam is in microseconds (picamera2's unit).
TIME_BASE = Fraction(1, 1_000_000)


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One H.264 access unit (Annex-B, start codes) or one Opus packet."""

    data: bytes
    pts: int  # microseconds, monotonic for the life of the source object
    keyframe: bool = False  # video: an IDR access unit with SPS/PPS in front


@dataclass(frozen=True, slots=True)
class VideoInfo:
    codec: str  # "H264"
    width: int
    height: int
    fps: int

    def as_message(self) -> dict[str, object]:
        return {"codec": self.codec, "width": self.width, "height": self.height, "fps": self.fps}


FrameSink = Callable[[EncodedFrame], None]
FaultSink = Callable[[str | None], None]


class EncodedSource(Protocol):
    """What the hub needs from a camera or microphone.

    ``start`` begins capture; from then on the source calls ``sink`` **on the
    event loop thread** (sources that capture on threads hand over with
    ``loop.call_soon_threadsafe``) once per access unit / packet.  ``on_fault``
    is called (loop thread) with a human-readable message when capture breaks
    and with ``None`` when it recovers.  ``request_keyframe`` may be called at
    any time from the loop thread; the next video frame should be an IDR.
    """

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None: ...

    async def stop(self) -> None: ...

    def request_keyframe(self) -> None: ...
