"""Viewers that receive but do not decode, for the CPU benchmark.

The CPU benchmark runs up to 8 viewers of 1080p on the same (2-core) machine
as the server it measures.  Decoding 8 H.264 streams would take a core of
its own and starve the server; what the server does per viewer does not
depend on the viewer decoding (it sees RTP receiver reports, NACK, PLI and
REMB either way).  Inside ``no_decoding()``, aiortc's receivers get a decoder
that only counts complete access units (the jitter buffer, depacketizing,
SRTP and RTCP all still run) and passes a stub "frame" on, so
``WatchSession.frames`` still counts what arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiortc import rtcrtpreceiver

from peercam.sources import h264


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """Stands in for a decoded picture: what ``tests.viewer`` reads from one."""

    width: int
    height: int
    key_frame: bool
    size: int


class CountingDecoder:
    """A "decoder" that hands every complete access unit on undecoded."""

    def decode(self, encoded_frame: Any) -> list[ReceivedFrame]:
        data = bytes(encoded_frame.data)
        return [ReceivedFrame(0, 0, h264.is_idr(data), len(data))]


@contextlib.contextmanager
def no_decoding() -> Iterator[None]:
    """Within the block, new aiortc receivers do not decode video (process-wide)."""
    original = rtcrtpreceiver.get_decoder

    def get_decoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "video/h264":
            return CountingDecoder()
        return original(codec)

    rtcrtpreceiver.get_decoder = get_decoder
    try:
        yield
    finally:
        rtcrtpreceiver.get_decoder = original
