"""Playing a recorded clip to one viewer over WebRTC: demux, pace, passthrough (no decode).

The MP4's samples are read once (on the recorder's worker thread) and
handed out at their recorded pace by hub-shaped feeds, so the session's
ordinary ``PassthroughTrack``s send them as ``av.Packet``s: aiortc only
packetizes, as for live video.  MP4 stores
H.264 as length-prefixed NAL units with SPS/PPS in the ``avcC`` box; RTP
wants Annex-B with SPS/PPS in front of each IDR, so samples are rewritten
(start codes, parameter sets) — the slices themselves are untouched.

Control comes over the session's data channel labelled ``playback``
(JSON text, see docs/PROTOCOL.md): ``play``, ``pause``, ``seek`` (to the
IDR at or before the asked time: a decoder can start nowhere else) and
``download`` (the MP4's bytes, in 16 KiB binary messages). Timestamps
handed to aiortc follow the playback clock, so they only go forward
through pauses and seeks and the browser's jitter buffer stays happy.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from ..hub import SubscriptionClosed
from ..media import EncodedFrame

log = logging.getLogger("peercam.playback")

START_CODE = b"\x00\x00\x00\x01"
CHUNK = 16 * 1024  # data channel message size every browser takes
MAX_BUFFERED = 1 << 20  # bytes queued in the data channel before the download waits
MAX_COMMAND = 1024  # bytes of one control message
#: A clip bigger than this is not loaded into memory (a Pi has 1-8 GB; the
#: default 60 s at 2 Mbit/s is 15 MB).
MAX_CLIP_BYTES = 64 << 20
COMMANDS_PER_SECOND = 20  # a viewer's control commands beyond this are refused


class PlaybackError(Exception):
    """The clip cannot be played (unreadable file); the message says why."""


@dataclass(frozen=True, slots=True)
class Sample:
    pts: int  # microseconds from the clip's start
    data: bytes
    key: bool = False


def parse_avcc(extradata: bytes) -> tuple[int, list[bytes]]:
    """NAL length size and the SPS/PPS NAL units of an ``avcC`` record."""
    if len(extradata) < 7 or extradata[0] != 1:
        raise PlaybackError("the clip's H.264 header (avcC) is missing or not version 1")
    length_size = (extradata[4] & 3) + 1
    units: list[bytes] = []
    pos = 5
    for count_mask in (0x1F, 0xFF):  # SPS count (5 bits), then PPS count (8 bits)
        count = extradata[pos] & count_mask
        pos += 1
        for _ in range(count):
            size = int.from_bytes(extradata[pos : pos + 2], "big")
            units.append(bytes(extradata[pos + 2 : pos + 2 + size]))
            pos += 2 + size
    return length_size, units


def to_annexb(sample: bytes, length_size: int, parameter_sets: list[bytes], key: bool) -> bytes:
    """A length-prefixed MP4 sample as an Annex-B access unit (SPS/PPS before an IDR)."""
    nals: list[bytes] = []
    pos = 0
    while pos + length_size <= len(sample):
        size = int.from_bytes(sample[pos : pos + length_size], "big")
        pos += length_size
        nals.append(sample[pos : pos + size])
        pos += size
    if key and not any(n and n[0] & 0x1F == 7 for n in nals):
        nals = parameter_sets + nals
    return b"".join(START_CODE + n for n in nals)


def load_clip(path: Path) -> tuple[list[Sample], list[Sample], float]:
    """Every video and audio sample of a clip (worker thread); raises PlaybackError."""
    try:
        if path.stat().st_size > MAX_CLIP_BYTES:
            raise PlaybackError(f"the clip is over {MAX_CLIP_BYTES >> 20} MiB")
        with av.open(str(path)) as container:
            vstream = container.streams.video[0]
            length_size, parameter_sets = parse_avcc(bytes(vstream.codec_context.extradata or b""))
            astream = container.streams.audio[0] if container.streams.audio else None
            video: list[Sample] = []
            audio: list[Sample] = []
            streams = [vstream] + ([astream] if astream is not None else [])
            for packet in container.demux(streams):
                if packet.size == 0 or packet.pts is None:
                    continue
                pts = int(packet.pts * packet.time_base * 1_000_000)
                if packet.stream is vstream:
                    data = to_annexb(bytes(packet), length_size, parameter_sets, packet.is_keyframe)
                    video.append(Sample(pts, data, packet.is_keyframe))
                else:
                    audio.append(Sample(max(0, pts), bytes(packet)))
    except (OSError, av.FFmpegError, IndexError) as exc:
        raise PlaybackError(f"the clip cannot be read: {exc}") from None
    if not video or not video[0].key:
        raise PlaybackError("the clip has no video starting on a key frame")
    video.sort(key=lambda s: s.pts)
    audio.sort(key=lambda s: s.pts)
    step = video[1].pts - video[0].pts if len(video) > 1 else 33_333
    duration = (video[-1].pts + step) / 1_000_000
    return video, audio, duration


class ClipPlayer:
    """One viewer's playback of one clip: a clock, two tracks, the control channel."""

    def __init__(
        self, clip_id: str, path: Path, video: list[Sample], audio: list[Sample], duration: float
    ) -> None:
        self.clip_id = clip_id
        self.path = path
        self.video = video
        self.audio = audio
        self.duration = duration
        self._keys = [s.pts for s in video if s.key]
        self._origin = time.monotonic()  # monotonic time of clip position 0 while playing
        self._epoch = self._origin  # output timestamps count from here
        self._paused_at: float | None = None
        self._generation = 0  # bumped by seek: tracks find their place again
        self._seek_to = 0
        self._changed = asyncio.Event()
        self._channel: Any = None
        self._download: asyncio.Task[None] | None = None
        self._ended_sent = False
        self._tokens = float(COMMANDS_PER_SECOND)
        self._refilled = time.monotonic()
        self.closed = False
        #: Hub-shaped sources for the session (``audio_feed`` None: the clip has no sound).
        self.video_feed = ClipFeed(self, "video")
        self.audio_feed = ClipFeed(self, "audio") if audio else None

    # --- clock ---------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused_at is not None

    def position(self) -> float:
        if self._paused_at is not None:
            return self._paused_at
        return min(self.duration, time.monotonic() - self._origin)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def play(self) -> None:
        if self._paused_at is not None:
            self._origin = time.monotonic() - self._paused_at
            self._paused_at = None
            self._notify()

    def pause(self) -> None:
        if self._paused_at is None:
            self._paused_at = self.position()
            self._notify()

    def seek(self, to: float) -> float:
        """Go to the IDR at or before ``to`` seconds; returns where playback resumes."""
        target = int(max(0.0, min(to, self.duration)) * 1_000_000)
        key = self._keys[max(0, bisect.bisect_right(self._keys, target) - 1)]
        self._seek_to = key
        self._generation += 1
        self._ended_sent = False
        position = key / 1_000_000
        if self._paused_at is not None:
            self._paused_at = position
        else:
            self._origin = time.monotonic() - position
        self._notify()
        return position

    async def wait_change(self, timeout: float | None) -> bool:
        """Sleep until ``timeout`` or a play/pause/seek/close; True when something changed."""
        event = self._changed
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def due(self, pts: int) -> float:
        return self._origin + pts / 1_000_000

    def out_pts(self, due: float) -> int:
        return max(0, round((due - self._epoch) * 1_000_000))

    def index_after_seek(self, kind: str) -> int:
        samples = self.video if kind == "video" else self.audio
        return bisect.bisect_left([s.pts for s in samples], self._seek_to)

    def reached_end(self) -> None:
        if not self._ended_sent:
            self._ended_sent = True
            self.send({"event": "ended", "position": round(self.duration, 3)})

    # --- control channel ---------------------------------------------------------------

    def attach(self, channel: Any) -> None:
        """The viewer's ``playback`` data channel: commands in, state and downloads out."""
        self._channel = channel

        @channel.on("open")
        def _opened() -> None:
            self.send_state()

        @channel.on("message")
        def _message(message: str | bytes) -> None:
            self._command(message)

        if getattr(channel, "readyState", "") == "open":
            self.send_state()

    def send(self, message: dict[str, object]) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(json.dumps(message, separators=(",", ":")))

    def send_state(self) -> None:
        self.send(
            {
                "event": "state",
                "clip": self.clip_id,
                "position": round(self.position(), 3),
                "duration": round(self.duration, 3),
                "paused": self.paused,
                "size": self.path.stat().st_size if self.path.exists() else 0,
            }
        )

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(
            COMMANDS_PER_SECOND, self._tokens + (now - self._refilled) * COMMANDS_PER_SECOND
        )
        self._refilled = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def _command(self, message: str | bytes) -> None:
        if not self._take_token():
            return  # a flood: dropped without an answer (answering would be a flood too)
        try:
            if isinstance(message, bytes) or len(message) > MAX_COMMAND:
                raise ValueError(f"commands are JSON text of at most {MAX_COMMAND} bytes")
            command = json.loads(message)
            if not isinstance(command, dict) or not isinstance(command.get("cmd"), str):
                raise ValueError('a command is {"cmd": "play" | "pause" | "seek" | "download"}')
            cmd = command["cmd"]
            if cmd == "play":
                self.play()
            elif cmd == "pause":
                self.pause()
            elif cmd == "seek":
                to = command.get("to")
                if not isinstance(to, int | float) or isinstance(to, bool) or to != to:
                    raise ValueError("seek needs 'to': seconds from the clip's start")
                self.seek(float(to))
            elif cmd == "download":
                if self._download is not None and not self._download.done():
                    raise ValueError("a download of this clip is already running")
                self._download = asyncio.ensure_future(self._send_file())
                return
            else:
                raise ValueError(f"unknown command {cmd[:40]!r}")
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self.send({"event": "error", "message": str(exc)[:200]})
            return
        self.send_state()

    async def _send_file(self) -> None:
        channel = self._channel
        loop = asyncio.get_running_loop()
        try:
            with self.path.open("rb") as f:
                size = self.path.stat().st_size
                self.send({"event": "download", "clip": self.clip_id, "size": size})
                sent = 0
                while not self.closed and channel.readyState == "open":
                    chunk = await loop.run_in_executor(None, f.read, CHUNK)
                    if not chunk:
                        break
                    for _ in range(2000):  # bounded: 2000 x 10 ms
                        if channel.bufferedAmount <= MAX_BUFFERED or self.closed:
                            break
                        await asyncio.sleep(0.01)
                    channel.send(chunk)
                    sent += len(chunk)
                self.send({"event": "download-done", "clip": self.clip_id, "size": sent})
        except OSError as exc:
            self.send({"event": "error", "message": f"download failed: {exc.strerror or exc}"})

    def close(self) -> None:
        self.closed = True
        if self._download is not None:
            self._download.cancel()
        self._notify()


class ClipSubscription:
    """One kind of a clip's samples at their recorded pace, shaped like a hub subscription.

    ``PassthroughTrack`` reads it exactly as it reads the live hub, so the
    session's tracks, packetizing and close path are the live ones.
    """

    def __init__(self, player: ClipPlayer, kind: str, feed: ClipFeed | None = None) -> None:
        self._player = player
        self._feed = feed
        self.kind = kind
        self.name = f"clip-{kind}"
        #: Set by a track that waits on two subscriptions (a live stream switch); a
        #: clip never switches, so nothing sets it here.
        self.notify: asyncio.Event | None = None
        self._samples = player.video if kind == "video" else player.audio
        self._index = 0
        self._generation = 0
        self.closed = False
        self.bandwidth: int | None = None
        self.delivered = 0

    async def get(self) -> EncodedFrame:
        player = self._player
        while True:
            if self.closed or player.closed:
                raise SubscriptionClosed(self.name)
            if self._generation != player._generation:
                self._generation = player._generation
                self._index = player.index_after_seek(self.kind)
            if self._index >= len(self._samples):
                if self.kind == "video":
                    player.reached_end()
                await player.wait_change(None)
                continue
            if player.paused:
                await player.wait_change(None)
                continue
            sample = self._samples[self._index]
            due = player.due(sample.pts)
            delay = due - time.monotonic()
            if delay > 0 and await player.wait_change(delay):
                continue  # paused, sought or closed meanwhile
            self._index += 1
            self.delivered += 1
            return EncodedFrame(sample.data, player.out_pts(due), sample.key)

    @property
    def hub(self) -> ClipFeed | None:
        """The feed it came from (the session reports REMB to ``subscription.hub``)."""
        return self._feed

    def request_keyframe(self, why: str) -> bool:
        """A viewer's PLI/FIR: a file cannot make an IDR (the next recorded one comes)."""
        return False

    def close(self) -> None:
        self.closed = True


class ClipFeed:
    """What a session needs from a hub, for a clip: subscribe; keyframes and REMB are moot."""

    #: No live source behind a clip (a session reads ``hub.source.info`` when there is one).
    source = None

    def __init__(self, player: ClipPlayer, kind: str) -> None:
        self._player = player
        self.kind = kind
        samples = player.video if kind == "video" else player.audio
        size = sum(len(sample.data) for sample in samples)
        #: The clip's mean bitrate: what the session's pacer must let through at least.
        self.bitrate = size * 8 / player.duration if player.duration > 0 else None

    def subscribe(self, name: str = "", limiter: object = None) -> ClipSubscription:
        return ClipSubscription(self._player, self.kind, self)

    def request_keyframe(self, why: str = "") -> None:
        """A file cannot make a new IDR; a viewer that lost one gets the next recorded one."""

    def report_bandwidth(self, sub: object, bps: int) -> None:
        """A clip is sent at the bitrate it was recorded with."""

    def recent_bitrate(self, window: float = 2.0) -> float | None:
        return self.bitrate
