"""Remux encoded frames into an MP4 with PyAV: packets are copied, never decoded or re-encoded.

H.264 arrives as Annex-B access units with SPS/PPS in front of every IDR;
FFmpeg's MP4 muxer turns them into length-prefixed samples and builds the
``avcC`` box from the first IDR.  Opus needs its ``OpusHead`` as extradata
(written here: mono or stereo, 48 kHz, the encoder's 312-sample pre-skip).
The ``moov`` box goes to the front (``faststart``) so a player, or the
playback reader, starts without seeking to the end.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

import av

from ..media import TIME_BASE
from .ring import Stamped

OPUS_RATE = 48_000
OPUS_PRE_SKIP = 312  # libopus' look-ahead at 48 kHz


def opus_head(channels: int = 1, pre_skip: int = OPUS_PRE_SKIP) -> bytes:
    """RFC 7845 identification header (the extradata MP4's ``dOps`` box is made from)."""
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, OPUS_RATE, 0, 0)


def write_mp4(
    path: Path,
    video: Sequence[Stamped],
    audio: Sequence[Stamped] = (),
    *,
    fps: int,
    width: int,
    height: int,
) -> float:
    """Write ``video`` (starting on an IDR) and ``audio`` to ``path``; returns the duration (s).

    Audio is placed by arrival time relative to the first video frame (the
    two sources have separate timestamp clocks); within the audio, the
    packets keep their own spacing.
    """
    if not video or not video[0].frame.keyframe:
        raise ValueError("a clip must start with an IDR")
    v0 = video[0]
    out = av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vstream = out.add_stream("h264", rate=fps)
        vstream.width = width
        vstream.height = height
        astream = None
        if audio:
            astream = out.add_stream("opus", rate=OPUS_RATE)
            astream.codec_context.extradata = opus_head()
        last_pts = 0
        for item in video:
            packet = av.Packet(item.frame.data)
            packet.stream = vstream
            packet.time_base = TIME_BASE
            packet.pts = packet.dts = last_pts = item.frame.pts - v0.frame.pts
            packet.is_keyframe = item.frame.keyframe
            out.mux(packet)
        if astream is not None:
            a0 = audio[0]
            offset = round((a0.at - v0.at) * 1_000_000)
            previous = -1
            for item in audio:
                pts = offset + item.frame.pts - a0.frame.pts
                if pts <= previous or pts < 0:
                    continue  # a clock step in the microphone: skip, never go backwards
                previous = pts
                packet = av.Packet(item.frame.data)
                packet.stream = astream
                packet.time_base = TIME_BASE
                packet.pts = packet.dts = pts
                out.mux(packet)
    finally:
        out.close()
    return (last_pts + round(1_000_000 / fps)) / 1_000_000


def probe_mp4(path: Path) -> dict[str, object]:
    """Duration, streams and the first video frame's type of a clip (tests, ``peercam`` tools)."""
    with av.open(str(path)) as container:
        streams = [s.type for s in container.streams]
        duration = (container.duration or 0) / av.time_base
    return {"duration": duration, "streams": streams}
