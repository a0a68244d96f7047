"""The obvious alternative to peercam: aiortc encodes the camera once per viewer.

    python -m bench.baseline_server --broker mqtt://127.0.0.1:1883 --device bench \\
        [--size 1280x720] [--fps 30] [--pattern noise] [--encoder aiortc|x264-same]

What a user writes with aiortc's own media path, following its webcam
example: one camera track producing raw pictures, a ``MediaRelay`` handing
it to every viewer (unbuffered: the latest picture wins), and one
``RTCPeerConnection`` per viewer whose sender runs aiortc's H.264 encoder on
those pictures.  The camera is the same test
pattern as peercam's (same renderer, same grain, same capture-time barcode),
rendered once per frame; only the encoding differs.

Encoders (``--encoder``):

- ``aiortc``: aiortc's stock ``H264Encoder`` as a user gets it (libx264,
  default preset, ``tune=zerolatency``, bitrate steered by the viewer's REMB
  between 0.5 and 3 Mbit/s);
- ``x264-same``: the same per-viewer architecture but each viewer's encoder
  has exactly peercam's settings (ultrafast, one thread, the configured
  bitrate): this isolates "encode per viewer" from "aiortc's preset".

Signaling is PROTOCOL.md's (hello/welcome, offer/answer, candidate, bye and
a retained status), so the same Python viewers and the same Chromium page
work against both servers.  This is a benchmark fixture, not a product: no
rate limits, no validation beyond what the benchmarks need.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import json
import logging
import signal
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc import rtcrtpsender as aiortc_sender
from aiortc.codecs.h264 import H264Encoder
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamTrack
from aiortc.sdp import candidate_from_sdp
from av.video.frame import PictureType

from peercam.ice import restrict_host_addresses
from peercam.session import h264_preferences
from peercam.sources.test_pattern import PatternRenderer, h264_level, x264_params

log = logging.getLogger("bench.baseline")

VIDEO_CLOCK = 90_000


class PatternTrack(MediaStreamTrack):
    """A camera as aiortc users write one: raw pictures at ``fps``, paced by the clock."""

    kind = "video"

    def __init__(self, width: int, height: int, fps: int, pattern: str) -> None:
        super().__init__()
        self._renderer = PatternRenderer(width, height, "baseline", pattern)
        self._fps = fps
        self._start: float | None = None
        self._slot = 0

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        else:
            self._slot += 1
            delay = self._start + self._slot / self._fps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            else:  # fell behind: skip slots, as a camera would
                self._slot = int((time.monotonic() - self._start) * self._fps)
        t_us = time.time_ns() // 1000
        picture = self._renderer.render(self._slot / self._fps, t_us)
        frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")  # a copy per picture
        frame.pts = round(self._slot * VIDEO_CLOCK / self._fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def same_x264(width: int, height: int, fps: int, bitrate: int) -> av.VideoCodecContext:
    """peercam's libx264 settings (``open_encoder``), in the camera track's 90 kHz time base.

    The time base matters: MediaRelay hands the *same* frame object to every
    viewer's encoder thread and PyAV rebases a frame's pts to the encoder's
    time base in place, so every encoder must share the frames' time base.
    """
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = fractions.Fraction(1, VIDEO_CLOCK)
    ctx.framerate = fractions.Fraction(fps, 1)
    ctx.bit_rate = bitrate
    ctx.thread_count = 1
    ctx.options = {
        "profile": "baseline",
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",
        "x264-params": x264_params(
            level=h264_level(width, height, fps, bitrate), keyframe_interval=60, bitrate=bitrate
        ),
    }
    ctx.open()
    return ctx


class SameX264Encoder(H264Encoder):
    """aiortc's H.264 encoder with peercam's libx264 settings (per viewer)."""

    bitrate = 2_000_000
    fps = 30

    def _encode_frame(self, frame: av.VideoFrame, force_keyframe: bool) -> Iterator[bytes]:
        if self.codec is None or (frame.width, frame.height) != (
            self.codec.width,
            self.codec.height,
        ):
            self.codec = same_x264(frame.width, frame.height, self.fps, self.bitrate)
        frame.pict_type = PictureType.I if force_keyframe else PictureType.NONE
        data = b"".join(bytes(p) for p in self.codec.encode(frame))
        if data:
            yield from self._split_bitstream(data)


def use_encoder(kind: str, bitrate: int, fps: int) -> None:
    """Make aiortc's senders use ``kind`` for H.264 (process-wide, like a user's patch)."""
    if kind == "aiortc":
        return
    SameX264Encoder.bitrate, SameX264Encoder.fps = bitrate, fps
    original = aiortc_sender.get_encoder

    def get_encoder(codec: Any) -> Any:
        if codec.mimeType.lower() == "video/h264":
            return SameX264Encoder()
        return original(codec)

    aiortc_sender.get_encoder = get_encoder


class BaselineServer:
    """PROTOCOL.md signaling around one relayed camera track and a pc per session."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.width, self.height = (int(x) for x in args.size.split("x"))
        self.camera = PatternTrack(self.width, self.height, args.fps, args.pattern)
        self.relay = MediaRelay()
        self.base = f"{args.prefix}/{args.device}"
        self.sessions: dict[tuple[str, str], RTCPeerConnection] = {}
        self.client: aiomqtt.Client | None = None

    def video(self) -> dict[str, Any]:
        return {"codec": "H264", "width": self.width, "height": self.height, "fps": self.args.fps}

    def status(self, state: str) -> bytes:
        return json.dumps(
            {
                "v": 1,
                "type": "status",
                "state": state,
                "name": "baseline",
                "viewers": len(self.sessions),
                "max_viewers": 64,
                "call": None,
                "video": self.video(),
                "audio": None,
                "version": f"baseline-{self.args.encoder}",
            }
        ).encode()

    async def send(self, viewer: str, message: dict[str, Any]) -> None:
        assert self.client is not None
        payload = json.dumps({"v": 1, **message}).encode()
        await self.client.publish(f"{self.base}/out/{viewer}", payload, qos=1)

    async def handle(self, viewer: str, msg: dict[str, Any]) -> None:
        kind, sid = msg.get("type"), str(msg.get("session"))
        if kind == "hello":
            await self.send(
                viewer,
                {
                    "type": "welcome",
                    "session": sid,
                    "ice_servers": [],
                    "ice_ttl": 0,
                    "video": self.video(),
                    "audio": None,
                    "talkback": False,
                },
            )
        elif kind == "offer":
            await self.close(viewer, sid)
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            self.sessions[(viewer, sid)] = pc
            # buffered=False: each viewer takes the latest picture.  With the
            # default (True) a per-viewer encoder slower than the camera makes
            # the relay's queue grow without bound (aiortc #1091 / #925); at
            # 1080p that is ~90 MB/s and would take the machine down.
            relayed = self.relay.subscribe(self.camera, buffered=False)
            transceiver = pc.addTransceiver(relayed, direction="sendonly")
            transceiver.setCodecPreferences(h264_preferences())
            await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            await self.send(
                viewer, {"type": "answer", "session": sid, "sdp": pc.localDescription.sdp}
            )
        elif kind == "candidate":
            pc = self.sessions.get((viewer, sid))
            cand = msg.get("candidate")
            if pc is None:
                return
            if cand is None:
                await pc.addIceCandidate(None)
            elif cand.get("candidate"):
                ice = candidate_from_sdp(cand["candidate"].removeprefix("candidate:"))
                ice.sdpMid, ice.sdpMLineIndex = cand.get("sdpMid"), cand.get("sdpMLineIndex")
                await pc.addIceCandidate(ice)
        elif kind == "bye":
            if sid == "*":
                for key in [k for k in self.sessions if k[0] == viewer]:
                    await self.close(*key)
            else:
                await self.close(viewer, sid)

    async def close(self, viewer: str, sid: str) -> None:
        pc = self.sessions.pop((viewer, sid), None)
        if pc is not None:
            await pc.close()

    async def run(self, stop: asyncio.Event) -> None:
        url = urlsplit(self.args.broker)
        will = aiomqtt.Will(f"{self.base}/status", self.status("offline"), qos=1, retain=True)
        async with aiomqtt.Client(
            url.hostname or "127.0.0.1", url.port or 1883, identifier="baseline", will=will
        ) as client:
            self.client = client
            await client.subscribe(f"{self.base}/in/+", qos=1)
            await client.publish(f"{self.base}/status", self.status("online"), qos=1, retain=True)
            log.info("baseline server online (%s encoder)", self.args.encoder)
            reader = asyncio.create_task(self._read(client))
            await stop.wait()
            reader.cancel()
            for key in list(self.sessions):
                await self.close(*key)
            await client.publish(f"{self.base}/status", self.status("offline"), qos=1, retain=True)

    async def _read(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            viewer = str(message.topic).rsplit("/", 1)[-1]
            try:
                msg = json.loads(bytes(message.payload))  # type: ignore[arg-type]
                await self.handle(viewer, msg)
            except Exception:
                log.exception("message from %s failed", viewer)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="bench")
    parser.add_argument("--prefix", default="peercam")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--bitrate", type=int, default=2_000_000)
    parser.add_argument("--pattern", choices=("bars", "noise"), default="noise")
    parser.add_argument("--encoder", choices=("aiortc", "x264-same"), default="aiortc")
    parser.add_argument("--host-network", action="append", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    restrict_host_addresses(args.host_network or ["127.0.0.1/32"])
    use_encoder(args.encoder, args.bitrate, args.fps)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await BaselineServer(args).run(stop)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
