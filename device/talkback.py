"""The device's speaker: a viewer's voice (talkback) and quick replies.

aiortc decodes the viewer's Opus into ``av.AudioFrame``s on the loop; the
loop only queues them.  A worker thread resamples to 48 kHz mono s16 and
writes to the sink (``aplay`` for ALSA, or a WAV file), so a slow sound card
never blocks signaling or video.  A full queue drops audio (talkback is
live: late audio is worse than a gap).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import IO, Protocol

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .config import ReplyConfig, TalkbackConfig
from .threads import in_thread

log = logging.getLogger("peercam.talkback")

RATE = 48_000
QUEUE_SECONDS = 1.0
IDLE_CLOSE = 5.0  # seconds of silence before the ALSA device is released
ERROR_TAIL = 2000  # bytes of aplay's stderr read for its last words


class AudioSink(Protocol):
    keep_open: bool

    def write(self, pcm: bytes) -> None: ...
    def close(self) -> None: ...


class WavSink:
    """Writes everything played to one WAV file (tests, and checking a set-up)."""

    keep_open = True

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: wave.Wave_write | None = None

    def write(self, pcm: bytes) -> None:
        if self._file is None:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._file = wave.open(self.path, "wb")  # noqa: SIM115 - closed in close()
            self._file.setnchannels(1)
            self._file.setsampwidth(2)
            self._file.setframerate(RATE)
        self._file.writeframes(pcm)  # patches the header: readable while it grows

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class AplaySink:
    """Plays through ALSA with ``aplay`` (alsa-utils), opened only while there is sound."""

    keep_open = False

    def __init__(self, device: str) -> None:
        self.device = device
        self._proc: subprocess.Popen[bytes] | None = None
        # aplay's complaints ("underrun!!!", even with -q) go to a file, not a
        # pipe: a pipe nobody reads fills up in a long call and blocks aplay.
        self._errors: IO[bytes] | None = None

    def write(self, pcm: bytes) -> None:
        if self._proc is None or self._proc.poll() is not None:
            aplay = shutil.which("aplay")
            if aplay is None:
                raise OSError("aplay not found: sudo apt install alsa-utils")
            self._close_errors()
            self._errors = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as aplay
            self._proc = subprocess.Popen(
                [
                    aplay,
                    "-q",
                    "-D",
                    self.device,
                    "-f",
                    "S16_LE",
                    "-r",
                    str(RATE),
                    "-c",
                    "1",
                    "-t",
                    "raw",
                ],
                stdin=subprocess.PIPE,
                stderr=self._errors,
            )
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(pcm)
            self._proc.stdin.flush()
        except BrokenPipeError:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=2)
            self._proc = None
            err = self._last_error()
            raise OSError(f"aplay -D {self.device} stopped: {err or 'no reason given'}") from None

    def _last_error(self) -> str:
        """The end of what aplay wrote to stderr (its reason for stopping)."""
        if self._errors is None:
            return ""
        try:
            self._errors.seek(0, os.SEEK_END)
            size = self._errors.tell()
            self._errors.seek(max(0, size - ERROR_TAIL))
            lines = self._errors.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def _close_errors(self) -> None:
        if self._errors is not None:
            self._errors.close()
            self._errors = None

    def close(self) -> None:
        if self._proc is not None:
            proc, self._proc = self._proc, None
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
        self._close_errors()


def make_sink(spec: str) -> AudioSink | None:
    kind, _, target = spec.partition(":")
    if kind == "wav":
        return WavSink(target)
    if kind == "alsa":
        return AplaySink(target)
    return None


def chime(seconds: float = 1.2) -> bytes:
    """A two-note door chime, for a quick reply that has no recording yet."""
    t = np.arange(int(RATE * seconds)) / RATE
    half = len(t) // 2
    tone = np.where(
        np.arange(len(t)) < half, np.sin(2 * math.pi * 659.3 * t), np.sin(2 * math.pi * 523.3 * t)
    )
    envelope = np.exp(-3.0 * (t % (seconds / 2)))
    return (tone * envelope * 0.5 * 32767).astype("<i2").tobytes()


def mono_pcm(frames: list[av.AudioFrame]) -> bytes:
    """The s16 mono samples of resampled frames (planes are padded: cut to the samples)."""
    return b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)


def decode_file(path: str) -> bytes:
    """Any audio file PyAV reads, as 48 kHz mono s16."""
    resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
    chunks: list[bytes] = []
    with av.open(path) as container:
        for frame in container.decode(audio=0):
            chunks.append(mono_pcm(resampler.resample(frame)))
    chunks.append(mono_pcm(resampler.resample(None)))
    return b"".join(chunks)


class Speaker:
    """The one speaker: a worker thread that feeds the sink."""

    def __init__(self, config: TalkbackConfig) -> None:
        self.config = config
        self.sink = make_sink(config.sink)
        self._queue: queue.Queue[av.AudioFrame | bytes | None] = queue.Queue(
            int(QUEUE_SECONDS * 50)
        )
        self._thread: threading.Thread | None = None
        self._replies = {r.id: r for r in config.replies}
        self.samples_played = 0
        self.dropped = 0
        self.fault: str | None = None

    @property
    def available(self) -> bool:
        return self.sink is not None

    def replies(self) -> list[dict[str, str]]:
        return [{"id": r.id, "text": r.text} for r in self.config.replies] if self.sink else []

    def start(self) -> None:
        if self.sink is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._work, name="peercam-speaker", daemon=True)
        self._thread.start()

    # --- loop side ----------------------------------------------------------------

    def play_frame(self, frame: av.AudioFrame) -> None:
        self._put(frame)

    def play_reply(self, reply_id: str) -> ReplyConfig | None:
        """Queue a quick reply; None when there is no such reply."""
        reply = self._replies.get(reply_id)
        if reply is None or self.sink is None:
            return None
        self._put(reply.id.encode())  # bytes = a reply id; decoded in the worker
        return reply

    def _put(self, item: av.AudioFrame | bytes) -> None:
        if self._thread is None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            if self.dropped in (1, 100) or self.dropped % 1000 == 0:
                log.warning(
                    "speaker: %d audio frame(s) dropped (the sink is too slow)", self.dropped
                )

    async def play_track(self, track: MediaStreamTrack, who: str) -> None:
        """Play a viewer's audio track until it ends."""
        frames = 0
        started = time.monotonic()
        try:
            while True:
                frame = await track.recv()
                frames += 1
                if frames == 1:
                    log.info("talkback from %s: audio is arriving", who)
                self.play_frame(frame)
        except MediaStreamError:
            pass
        finally:
            if frames:
                log.info(
                    "talkback from %s ended: %d audio frames in %.1f s",
                    who,
                    frames,
                    time.monotonic() - started,
                )

    async def close(self) -> None:
        if self._thread is None:
            return
        await in_thread(self._stop_worker, name="peercam-speaker-stop")

    def _stop_worker(self) -> None:
        assert self._thread is not None
        while True:
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self._queue.get_nowait()
        self._thread.join(timeout=5)
        self._thread = None

    # --- worker thread --------------------------------------------------------------

    def _work(self) -> None:
        assert self.sink is not None
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        idle = True
        while True:
            try:
                item = self._queue.get(timeout=IDLE_CLOSE)
            except queue.Empty:
                if not idle and not self.sink.keep_open:
                    self.sink.close()
                idle = True
                continue
            if item is None:
                break
            idle = False
            try:
                if isinstance(item, bytes):
                    pcm = self._reply_pcm(item.decode())
                else:
                    pcm = mono_pcm(resampler.resample(item))
                self.sink.write(pcm)
                self.samples_played += len(pcm) // 2
                self.fault = None
            except (OSError, av.FFmpegError, ValueError) as exc:
                if self.fault != str(exc):
                    log.error("speaker: %s", exc)
                self.fault = str(exc)
        self.sink.close()

    def _reply_pcm(self, reply_id: str) -> bytes:
        reply = self._replies[reply_id]
        if reply.file:
            try:
                return decode_file(reply.file)
            except (OSError, av.FFmpegError) as exc:
                log.warning(
                    "quick reply %r: cannot play %s (%s); a chime instead",
                    reply.id,
                    reply.file,
                    exc,
                )
        else:
            log.info("quick reply %r has no recording (set its file): playing a chime", reply.id)
        return chime()
