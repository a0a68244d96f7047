"""The microphone: PCM captured on a thread, encoded to Opus once, fanned out by the hub.

Every viewer gets the same Opus packets (aiortc only packetizes an
``av.Packet``; no encoder per viewer).  Opus at 48 kHz, mono, 20 ms frames
(960 samples), 32 kbit/s, libopus "voip" mode: what WebRTC expects.

- ``TestToneSource``: a 440 Hz tone generated at real-time pace (CI, the demo).
- ``AlsaSource``: PyAV's ALSA input (``av.open("plughw:1,0", format="alsa")``).
  PyPI's PyAV wheels carry their own libasound, which looks for its
  configuration under a build path (``/tmp/vendor/share/alsa``) and then
  knows no ``plughw``/``default`` device at all; the source points it at the
  system's ``/usr/share/alsa`` when that exists and nothing else was set.

A microphone that is missing, busy or unplugged never stops video: ``start``
raises one precise message (the hub shows it in ``status`` and retries with
backoff), a read error mid-stream is reported through ``on_fault``.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.logging
import numpy as np

from ..media import EncodedFrame, FaultSink, FrameSink
from ..threads import in_thread
from .threaded import Run, ThreadedSource

log = logging.getLogger("peercam.microphone")

SAMPLE_RATE = 48_000
FRAME_SAMPLES = 960  # 20 ms at 48 kHz
FRAME_US = 20_000
OPUS_BITRATE = 32_000
CODEC = "opus"
VIDEO_ONLY = "continuing with video only"


class MicrophoneError(Exception):
    """The microphone cannot be used; the message (one line) says why and what to do."""


def open_opus_encoder(bitrate: int = OPUS_BITRATE) -> av.AudioCodecContext:
    """libopus: 48 kHz mono s16 in, one packet per 20 ms frame out."""
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate = SAMPLE_RATE
    ctx.layout = "mono"
    ctx.format = "s16"
    ctx.bit_rate = bitrate
    ctx.time_base = Fraction(1, SAMPLE_RATE)
    ctx.options = {"application": "voip", "frame_duration": "20"}
    ctx.open()
    return ctx


class _OpusThreadSource(ThreadedSource):
    """Common life of a microphone source: a capture thread, Opus once, hand-over."""

    codec = CODEC
    name = "microphone"

    @property
    def thread_name(self) -> str:
        return f"peercam-{self.name}"

    @property
    def pts_step(self) -> int:
        return FRAME_US

    # subclasses: open the input (blocking, may raise MicrophoneError) and read 20 ms frames
    def _open_input(self) -> Any:
        raise NotImplementedError

    def _frames(self, run: Run, source: Any) -> Iterator[av.AudioFrame]:
        raise NotImplementedError

    def _close_input(self, source: Any) -> None:
        pass

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        if self.running:
            return
        await self.stop()  # reaps a thread that ended on its own (a read error); else a no-op
        source = await in_thread(
            self._open_input, name="peercam-mic-open", discard=self._close_input
        )
        try:
            encoder = open_opus_encoder()
        except Exception:
            self._close_input(source)
            raise
        self._launch(sink, on_fault, self._capture, source, encoder)

    def request_keyframe(self) -> None:
        """Every Opus packet decodes on its own."""

    def _capture(self, run: Run, source: Any, encoder: av.AudioCodecContext) -> None:
        """Thread body: read, encode once, hand over; a read error is reported, not raised."""
        samples = packets = 0
        try:
            for frame in self._frames(run, source):
                if run.stop.is_set():
                    break
                frame.pts = samples
                frame.time_base = Fraction(1, SAMPLE_RATE)
                samples += frame.samples
                for packet in encoder.encode(frame):
                    pts = run.pts_base + packets * FRAME_US
                    packets += 1
                    self._post(run, self._deliver, EncodedFrame(bytes(packet), pts, True))
        except Exception as exc:
            if not run.stop.is_set():  # the hub logs the fault and restarts capture
                self._post(run, self._report, self._describe_read_error(exc))
        finally:
            self._close_input(source)

    def _describe_read_error(self, exc: Exception) -> str:
        return f"{self.name} stopped: {exc or type(exc).__name__}; {VIDEO_ONLY}"


# --------------------------------------------------------------------------
# A generated tone
# --------------------------------------------------------------------------


class TestToneSource(_OpusThreadSource):
    """A 440 Hz sine at -12 dBFS, 20 ms frames paced by the monotonic clock."""

    __test__ = False  # not a pytest class
    name = "test tone"

    def __init__(self, frequency: float = 440.0, level_dbfs: float = -12.0) -> None:
        super().__init__()
        self.frequency = frequency
        self.amplitude = 32767 * 10 ** (level_dbfs / 20)

    def _open_input(self) -> None:
        return None

    def _frames(self, run: Run, source: Any) -> Iterator[av.AudioFrame]:
        step = 2 * math.pi * self.frequency / SAMPLE_RATE
        phase = 0.0
        index = np.arange(FRAME_SAMPLES)
        t0 = time.monotonic()
        n = 0
        while not run.stop.wait(max(0.0, t0 + n * FRAME_US / 1e6 - time.monotonic())):
            pcm = (self.amplitude * np.sin(phase + step * index)).astype(np.int16)
            phase = (phase + step * FRAME_SAMPLES) % (2 * math.pi)
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            yield frame
            n += 1


# --------------------------------------------------------------------------
# ALSA
# --------------------------------------------------------------------------

SYSTEM_ALSA = Path("/usr/share/alsa")
_CARD_RE = re.compile(r"^(?:plug)?hw:(?:CARD=)?([^,]+)")


def use_system_alsa_config(environ: dict[str, str] | os._Environ[str] = os.environ) -> bool:
    """Point a bundled libasound at the system's ALSA configuration (once, if unset)."""
    if "ALSA_CONFIG_PATH" in environ or not (SYSTEM_ALSA / "alsa.conf").is_file():
        return False
    environ["ALSA_CONFIG_DIR"] = str(SYSTEM_ALSA)
    environ["ALSA_CONFIG_PATH"] = str(SYSTEM_ALSA / "alsa.conf")
    return True


def _sound_cards(proc: Path = Path("/proc/asound")) -> dict[str, str] | None:
    """``{index: id}`` of the sound cards, or None when the kernel has no sound support."""
    cards_file = proc / "cards"
    try:
        text = cards_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    cards: dict[str, str] = {}
    for line in text.splitlines():
        match = re.match(r"^\s*(\d+)\s+\[(\S+)\s*\]", line)
        if match:
            cards[match.group(1)] = match.group(2)
    return cards


def describe_alsa_error(device: str, detail: str) -> str:
    """One line for a failed ``snd_pcm_open``/read, with the command that helps."""
    low = detail.lower()
    where = f"alsa:{device}"
    if "busy" in low:
        return (
            f"{where} is busy: another program records from it "
            f"(`fuser -v /dev/snd/*` shows which); {VIDEO_ONLY}"
        )
    if "permission" in low or "not permitted" in low:
        return (
            f"{where}: permission denied: add the service user to the audio group "
            f"(`sudo usermod -aG audio $USER`); {VIDEO_ONLY}"
        )
    if "no such" in low or "cannot find card" in low or "unknown pcm" in low:
        return (
            f"{where} not found: `arecord -l` lists capture devices; set [audio] source = "
            f'"alsa:plughw:CARD,DEVICE"; {VIDEO_ONLY}'
        )
    return f"{where} cannot be opened: {detail}; {VIDEO_ONLY}"


def open_alsa(device: str, *, channels: int = 1) -> av.container.InputContainer:
    """``av.open`` an ALSA capture device; MicrophoneError with a precise line on failure.

    FFmpeg's ALSA demuxer turns every ``snd_pcm_open`` error into EIO; its
    log line has the real reason, so it is captured for the message.
    """
    use_system_alsa_config()
    match = _CARD_RE.match(device)  # hw:/plughw: name a card; other PCMs come from config
    cards = _sound_cards() if match else {}
    if cards is None:
        raise MicrophoneError(
            f"alsa:{device}: this machine has no sound support (/proc/asound is "
            f"missing); {VIDEO_ONLY}"
        )
    if match and match.group(1) not in cards and match.group(1) not in cards.values():
        listed = ", ".join(f"{i}: {name}" for i, name in cards.items()) or "none"
        raise MicrophoneError(
            f"alsa:{device} not found: sound cards are {listed} "
            f"(`arecord -l` lists capture devices); {VIDEO_ONLY}"
        )
    previous = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture(local=True) as logs:
            try:
                return av.open(
                    device,
                    format="alsa",
                    options={"sample_rate": str(SAMPLE_RATE), "channels": str(channels)},
                )
            except av.FFmpegError as exc:
                detail = next(
                    (m.strip() for _, name, m in reversed(logs) if name == "alsa"),
                    str(exc),
                )
                reason = re.search(r"\(([^()]*)\)\s*$", detail)
                raise MicrophoneError(
                    describe_alsa_error(device, reason.group(1) if reason else detail)
                ) from None
    finally:
        av.logging.set_level(previous)


class AlsaSource(_OpusThreadSource):
    """A microphone through ALSA (``plughw:`` converts rate/format in the driver stack)."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device
        self.name = f"alsa:{device}"

    def _open_input(self) -> av.container.InputContainer:
        container = open_alsa(self.device)
        log.info(
            "microphone %s open (%s)", self.name, container.streams.audio[0].codec_context.name
        )
        return container

    def _close_input(self, source: Any) -> None:
        if source is not None:
            try:
                source.close()
            except Exception as exc:
                log.debug("microphone %s: close failed: %s", self.name, exc)

    def _frames(self, run: Run, source: Any) -> Iterator[av.AudioFrame]:
        resampler = av.AudioResampler(
            format="s16", layout="mono", rate=SAMPLE_RATE, frame_size=FRAME_SAMPLES
        )
        for frame in source.decode(audio=0):
            if run.stop.is_set():
                return
            frame.pts = None  # ALSA stamps wall-clock time; the source keeps its own
            yield from resampler.resample(frame)

    def _describe_read_error(self, exc: Exception) -> str:
        detail = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return f"{self.name} stopped delivering ({detail}; unplugged?); {VIDEO_ONLY}"
