"""The simulated hardware behind the fake picamera2 (not part of picamera2's API).

- ``Sensor``: the camera pipeline's thread.  It paces itself at the
  configured frame duration, renders a test picture (peercam's
  ``PatternRenderer``, flipped per the configured transform), stamps it with
  a monotonic "sensor timestamp" in nanoseconds and hands it to every running
  encoder through ``Encoder.encode(stream, request)``, as picamera2's event
  loop thread does.  It honours the control file (stall, wedge, unplug).
- ``V4L2Device``: a stand-in for ``/dev/video11`` (bcm2835-codec-encode):
  libx264 on its own thread, the controls the real driver takes at run time
  through ``VIDIOC_S_CTRL`` (bitrate, force key frame).  The fake patches
  ``fcntl.ioctl`` so that ioctls on its descriptors reach it and every other
  descriptor goes to the kernel untouched.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from peercam.fakehw import control as ctl
from peercam.sources.test_pattern import Downscaler, PatternRenderer

_log = logging.getLogger("picamera2.fake")

# --- control and state ------------------------------------------------------------------


class _ControlCache:
    """``camera.json`` re-read at most every ``period`` seconds (and only when it changed)."""

    def __init__(self, directory: Path, period: float = 0.1) -> None:
        self.directory = directory
        self.period = period
        self._checked = 0.0
        self._mtime: float | None = None
        self._value = ctl.read_control(directory)
        self._lock = threading.Lock()

    def get(self, fresh: bool = False) -> ctl.Control:
        with self._lock:
            now = time.monotonic()
            if fresh or now - self._checked >= self.period:
                self._checked = now
                try:
                    mtime = (self.directory / ctl.CONTROL_FILE).stat().st_mtime_ns
                except FileNotFoundError:
                    mtime = None
                if fresh or mtime != self._mtime:
                    self._mtime = mtime
                    self._value = ctl.read_control(self.directory)
            return self._value


_shared: dict[str, Any] = {}
_shared_lock = threading.Lock()


def hw_dir() -> Path:
    return ctl.hw_dir()


def control(fresh: bool = False) -> ctl.Control:
    with _shared_lock:
        cache = _shared.get("control")
        if cache is None or cache.directory != hw_dir():
            cache = _shared["control"] = _ControlCache(hw_dir())
    return cache.get(fresh)


def state() -> ctl.StateWriter:
    with _shared_lock:
        writer = _shared.get("state")
        if writer is None or writer.directory != hw_dir():
            writer = _shared["state"] = ctl.StateWriter(hw_dir())
    return writer


# --- camera locking (libcamera locks the media device with lockf) --------------------------

_held: dict[int, int] = {}  # camera index -> lock fd, for this process


def acquire(index: int) -> None:
    """Acquire camera ``index`` or raise what libcamera's binding raises: EBUSY."""
    if index in _held:
        raise RuntimeError(f"Failed to acquire camera: {os.strerror(errno.EBUSY)}")
    fd = os.open(ctl.lock_path(index, hw_dir()), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        _log.error("Pipeline handler in use by another process")
        raise RuntimeError(f"Failed to acquire camera: {os.strerror(errno.EBUSY)}") from None
    _held[index] = fd


def release(index: int) -> None:
    fd = _held.pop(index, None)
    if fd is not None:
        os.close(fd)


# --- requests -----------------------------------------------------------------------------


class _LibcameraRequest:
    def __init__(self, metadata: dict[str, Any]) -> None:
        self.metadata = metadata


class FakeRequest:
    """A completed request: one picture per stream, metadata, acquire/release counting."""

    def __init__(self, arrays: dict[str, np.ndarray], timestamp_ns: int) -> None:
        from libcamera import controls

        self.request = _LibcameraRequest({controls.SensorTimestamp: timestamp_ns})
        self.stream_map = {name: name for name in arrays}
        self.arrays = arrays
        self.refs = 1

    def acquire(self) -> None:
        self.refs += 1

    def release(self) -> None:
        self.refs -= 1

    def make_array(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.request.metadata)


# --- the sensor / pipeline thread ------------------------------------------------------------


def _flip(buffer: np.ndarray, width: int, height: int, hflip: bool, vflip: bool) -> np.ndarray:
    if not (hflip or vflip):
        return buffer.copy()
    out = np.empty_like(buffer)
    src, dst = buffer.reshape(-1), out.reshape(-1)
    planes = (
        (0, width, height),
        (width * height, width // 2, height // 2),
        (width * height * 5 // 4, width // 2, height // 2),
    )
    for offset, w, h in planes:
        plane = src[offset : offset + w * h].reshape(h, w)
        if hflip:
            plane = plane[:, ::-1]
        if vflip:
            plane = plane[::-1, :]
        dst[offset : offset + w * h].reshape(h, w)[:] = plane
    return out


class Sensor:
    """Produces requests at the configured rate while the camera is started."""

    def __init__(
        self,
        *,
        index: int,
        model: str,
        width: int,
        height: int,
        frame_duration_us: int,
        hflip: bool,
        vflip: bool,
        deliver: Callable[[FakeRequest], None],
        lores: tuple[int, int] | None = None,
    ) -> None:
        self.index = index
        #: The ISP's second output: the same picture, smaller (None: not configured).
        self._lores = Downscaler(width, height, *lores) if lores is not None else None
        self.model = model
        self.width, self.height = width, height
        self.period = max(frame_duration_us, 1000) / 1_000_000
        self.hflip, self.vflip = hflip, vflip
        self._deliver = deliver
        self._stop = threading.Event()
        initial = control(fresh=True)
        self._wedge = initial.wedge
        self._visitor = initial.visitor
        self._renderer = PatternRenderer(width, height, f"{model} fake cam{index}", initial.scene)
        self._thread = threading.Thread(target=self._run, name="picamera2-fake-sensor", daemon=True)
        self.frames = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join(5)

    def _why_silent(self) -> str | None:
        c = control()
        if self.model not in c.cameras[self.index : self.index + 1]:
            return "camera unplugged"
        if c.stall:
            return "stalled"
        if c.wedge > self._wedge:
            return "wedged"
        return None

    def _run(self) -> None:
        t0 = time.monotonic()
        slot = 0
        silent: str | None = None
        while not self._stop.wait(max(0.0, t0 + slot * self.period - time.monotonic())):
            late = int((time.monotonic() - (t0 + slot * self.period)) / self.period)
            slot += max(late, 0)  # a late thread skips frames, as a sensor does
            why = self._why_silent()
            if why != silent:
                if why:
                    _log.error("Camera frontend has timed out! (fake: %s)", why)
                silent = why
            if why is None:
                visitor = control().visitor
                if visitor > self._visitor:
                    self._visitor = visitor
                    self._renderer.walk_visitor()
                picture = self._renderer.render(slot * self.period, time.time_ns() // 1000)
                array = _flip(picture, self.width, self.height, self.hflip, self.vflip)
                arrays = {"main": array}
                if self._lores is not None:
                    arrays["lores"] = self._lores.scale(array).copy()
                self._deliver(FakeRequest(arrays, time.monotonic_ns()))
                self.frames += 1
            slot += 1


# --- libx264 "hardware" ------------------------------------------------------------------------

_PROFILES = {
    "baseline": "baseline",
    "constrained baseline": "baseline",  # x264's baseline is constrained baseline
    "main": "main",
    "high": "high",
}


def open_x264(
    *,
    width: int,
    height: int,
    framerate: float,
    bitrate: int,
    iperiod: int | None,
    profile: str | None,
    repeat: bool,
    level: str = "4",
) -> av.VideoCodecContext:
    """libx264 configured like the Pi's encoder: IDR-only key frames, no B-frames.

    The Pi's default profile is High; ``profile`` picks another.  Rate
    control follows ``bitrate`` with a VBV of half a second; changing
    ``bit_rate`` on the returned context takes effect at the next frame
    (libavcodec reconfigures x264); the VBV cap stays at the opening rate.
    """
    ctx = av.CodecContext.create("libx264", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height = width, height
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = Fraction(1, 1_000_000)
    ctx.framerate = Fraction(round(framerate * 1000), 1000)
    ctx.bit_rate = bitrate
    ctx.thread_count = 1
    kbps = max(1, bitrate // 1000)
    x264_profile = _PROFILES.get((profile or "high").lower(), "high")
    # ultrafast turns CABAC and 8x8 transforms off, and x264 then writes the
    # Baseline profile whatever was asked: switch them back on, as the Pi's
    # Main/High streams use them.
    tools = {"baseline": [], "main": ["cabac=1"], "high": ["cabac=1", "8x8dct=1"]}[x264_profile]
    ctx.options = {
        "profile": x264_profile,
        "preset": "ultrafast",
        "tune": "zerolatency",
        "forced-idr": "1",
        "maxrate": f"{kbps}k",  # the VBV cap stays at the opening bitrate
        "bufsize": f"{max(1, kbps // 2)}k",
        "x264-params": ":".join(
            [
                f"level={level}",  # bcm2835-codec's default level is 4.0
                f"keyint={iperiod or 60}",
                "scenecut=0",
                "bframes=0",
                f"repeat-headers={1 if repeat else 0}",
                "annexb=1",
                "slices=1",
                "aud=0",
                *tools,
            ]
        ),
    }
    ctx.open()
    return ctx


# --- /dev/video11 and its ioctls ---------------------------------------------------------------

_IOC_WRITE, _IOC_READ = 1, 2


def _iowr(kind: str, nr: int, size: int) -> int:
    return ((_IOC_READ | _IOC_WRITE) << 30) | (size << 16) | (ord(kind) << 8) | nr


VIDIOC_S_CTRL = _iowr("V", 28, 8)  # struct v4l2_control { __u32 id; __s32 value; }
V4L2_CID_MPEG_VIDEO_BITRATE = 0x00990900 + 207
V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME = 0x00990900 + 229

_devices: dict[int, Callable[[int, int], None]] = {}
_real_ioctl = fcntl.ioctl


def _ioctl(fd: Any, request: int, arg: Any = 0, mutate_flag: bool = True) -> Any:
    number = fd if isinstance(fd, int) else fd.fileno()
    handler = _devices.get(number)
    if handler is None:
        return _real_ioctl(fd, request, arg, mutate_flag)
    if request != VIDIOC_S_CTRL:
        raise OSError(errno.ENOTTY, os.strerror(errno.ENOTTY))
    cid, value = struct.unpack("=Ii", bytes(arg)[:8])
    handler(cid, value)
    return 0 if not isinstance(arg, bytes) else arg


def _install_ioctl() -> None:
    if fcntl.ioctl is not _ioctl:
        fcntl.ioctl = _ioctl


class V4L2Device:
    """An open ``/dev/video11``: a real descriptor (of /dev/null) the fake ioctl knows."""

    def __init__(self, on_control: Callable[[int, int], None]) -> None:
        _install_ioctl()
        self.file = open(os.devnull, "rb+", buffering=0)  # noqa: SIM115 - closed by close()
        _devices[self.file.fileno()] = self._s_ctrl
        self._on_control = on_control

    def _s_ctrl(self, cid: int, value: int) -> None:
        if cid not in (V4L2_CID_MPEG_VIDEO_BITRATE, V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        self._on_control(cid, value)

    def close(self) -> None:
        if not self.file.closed:
            _devices.pop(self.file.fileno(), None)
            self.file.close()
