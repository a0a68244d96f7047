"""The pre-roll ring: the last few seconds of encoded video and audio, in memory.

Video is kept from the IDR at or before ``now - seconds`` (a clip must start
on an IDR to decode), so the ring holds between ``seconds`` and ``seconds +
one keyframe interval`` of video; audio is kept from the first video frame
on.  A byte cap bounds it whatever the encoder does (a huge keyframe
interval, a bitrate spike): the oldest group of pictures goes first.

Frames are stamped with their arrival time (monotonic seconds), the one
clock video and audio share, so a clip can line the two up.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from ..media import EncodedFrame


@dataclass(frozen=True, slots=True)
class Stamped:
    frame: EncodedFrame
    at: float  # time.monotonic() when the hub delivered it


class PreRoll:
    """Bounded ring of recent frames; all calls on the event loop."""

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.video: deque[Stamped] = deque()
        self.audio: deque[Stamped] = deque()
        self._keys: deque[float] = deque()  # arrival times of the IDRs in ``video``
        self.bytes = 0

    def add_video(self, frame: EncodedFrame, now: float) -> None:
        if not self.video and not frame.keyframe:
            return  # a clip cannot start mid-GOP: wait for an IDR
        self.video.append(Stamped(frame, now))
        self.bytes += len(frame.data)
        if frame.keyframe:
            self._keys.append(now)
        self._trim(now)

    def add_audio(self, frame: EncodedFrame, now: float) -> None:
        if not self.video:
            return  # nothing to go with yet
        self.audio.append(Stamped(frame, now))
        self.bytes += len(frame.data)
        self._trim_audio()

    def _drop_gop(self) -> None:
        """Drop the oldest group of pictures (up to, not including, the next IDR)."""
        self._keys.popleft()
        video = self.video
        self.bytes -= len(video.popleft().frame.data)
        while video and not video[0].frame.keyframe:
            self.bytes -= len(video.popleft().frame.data)

    def _trim(self, now: float) -> None:
        cutoff = now - self.seconds
        while len(self._keys) >= 2 and self._keys[1] <= cutoff:
            self._drop_gop()
        while self.bytes > self.max_bytes and len(self._keys) >= 2:
            self._drop_gop()
        if self.bytes > self.max_bytes:  # one GOP alone is over the cap
            self.clear()
            return
        self._trim_audio()

    def _trim_audio(self) -> None:
        start = self.video[0].at if self.video else float("inf")
        while self.audio and self.audio[0].at < start:
            self.bytes -= len(self.audio.popleft().frame.data)

    def clear(self) -> None:
        self.video.clear()
        self.audio.clear()
        self._keys.clear()
        self.bytes = 0

    def snapshot(self) -> tuple[list[Stamped], list[Stamped]]:
        """Copies of what is held now (the frames themselves are immutable)."""
        return list(self.video), list(self.audio)
