"""A JPEG still from the live H.264 stream (for the call log and the ringing pop-up).

The camera only produces H.264, so a snapshot is the next IDR from the hub,
decoded and re-encoded as a small JPEG in a worker thread (a 720p decode is
a few milliseconds on a Pi 4, but never on the event loop).
"""

from __future__ import annotations

import asyncio
import logging
from fractions import Fraction

import av

from .hub import MediaHub, SubscriptionClosed

log = logging.getLogger("peercam.snapshot")

MAX_WIDTH = 640  # a pop-up thumbnail
MAX_BYTES = 60_000  # stays under PROTOCOL.md's 64 KiB payload budget


def h264_keyframe_to_jpeg(access_unit: bytes, max_width: int = MAX_WIDTH) -> bytes:
    """Decode one IDR access unit (with SPS/PPS) and encode it as a JPEG under MAX_BYTES."""
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for packet in decoder.parse(access_unit) or [av.Packet(access_unit)]:
        frames.extend(decoder.decode(packet))
    frames.extend(decoder.decode(None))
    if not frames:
        raise ValueError("the key frame did not decode to a picture")
    width = min(max_width, frames[0].width)
    while True:
        jpeg = _encode_jpeg(frames[0], width)
        if len(jpeg) <= MAX_BYTES or width <= 160:
            return jpeg
        width = width * 3 // 4  # busy scene: smaller picture until it fits


def _encode_jpeg(frame: av.VideoFrame, width: int) -> bytes:
    width -= width % 2
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    scaled = frame.reformat(width=width, height=height, format="yuvj420p")
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    packets = [*encoder.encode(scaled), *encoder.encode(None)]
    if not packets:
        raise ValueError("the JPEG encoder produced nothing")
    return bytes(packets[0])


async def take_snapshot(video: MediaHub, timeout: float = 5.0) -> bytes | None:
    """The next key frame as JPEG, or None (logged) when the camera gives none in time."""
    sub = video.subscribe("snapshot")
    try:
        async with asyncio.timeout(timeout):
            while True:
                frame = await sub.get()
                if frame.keyframe:
                    break
        jpeg = await asyncio.to_thread(h264_keyframe_to_jpeg, frame.data)
    except TimeoutError:
        log.warning("no snapshot: the camera sent no key frame within %.0f s", timeout)
        return None
    except SubscriptionClosed:
        return None
    except (ValueError, av.FFmpegError) as exc:
        log.warning("no snapshot: %s", exc)
        return None
    finally:
        sub.close()
    log.info("snapshot taken (%d bytes JPEG)", len(jpeg))
    return jpeg
