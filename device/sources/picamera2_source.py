"""The Raspberry Pi camera through picamera2, encoded by the GPU's H.264 encoder.

One ``Picamera2`` and one ``H264Encoder`` per capture run: opened when the
hub starts the source (first viewer), closed when it stops it (``idle_stop``
after the last viewer, or to restart after a stall).  picamera2 runs the
camera and the encoder on its own threads; a custom ``Output`` receives each
encoded access unit on the encoder's thread and hands it to the event loop
with ``call_soon_threadsafe`` (``FrameHandover``), untouched: the bytes the
GPU wrote are the bytes every viewer receives.

Checked against picamera2's source, 0.3.17 to 0.3.38 (see
``tests/data/picamera2_api.json``):

- ``H264Encoder(bitrate, repeat, iperiod, framerate, profile)``: ``repeat``
  puts SPS/PPS in front of every IDR, ``profile="baseline"`` because the Pi
  encoder defaults to High.  On a Pi 5 the same import is picamera2's
  libx264 ``LibavH264Encoder`` (software): said in the log and in ``status``.
- ``Output.outputframe(frame, keyframe, timestamp, packet, audio)`` since
  0.3.23, three arguments before: the override takes all with defaults.
  Timestamps are microseconds from the sensor, 0 at each encoder start: the
  handover keeps pts monotonic across restarts.
- ``encoder.force_key_frame()`` since 0.3.32; before that the V4L2 control
  is set on ``encoder.vd`` directly (hardware), or viewers wait for the
  periodic IDR (old software encoder).
- Bitrate at run time has no picamera2 API: ``VIDIOC_S_CTRL`` of
  ``V4L2_CID_MPEG_VIDEO_BITRATE`` on ``encoder.vd`` (hardware), or the
  libx264 context's ``bit_rate`` (software; libavcodec reconfigures x264 at
  the next frame).
- ``Picamera2(n)`` raises ``RuntimeError("No camera number n found - use
  \"rpicam-hello --list-cameras\" ...")`` when camera ``n`` does not exist
  (0.3.37+; a bare ``IndexError`` before),
  ``RuntimeError("Camera __init__ sequence did not complete.")``
  caused by libcamera's "Failed to acquire camera: Device or resource busy"
  when another process has it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from ..bitrate import BitrateGovernor
from ..config import CameraConfig
from ..media import EncodedFrame, FaultSink, FrameSink, VideoInfo
from ..threads import in_thread
from . import h264, v4l2
from .factory import SourceUnavailable
from .lores_motion import LoresReader, lores_size
from .substream import SubstreamSpec

log = logging.getLogger("peercam.camera")

NO_CAMERA_HELP = "check the ribbon cable and `rpicam-hello --list-cameras`"
INSTALL_HELP = (
    "on Raspberry Pi OS: `sudo apt install -y python3-picamera2` and a venv made with "
    "`python3 -m venv --system-site-packages`; elsewhere run with --fake-hardware"
)
UPGRADE_HELP = "`sudo apt update && sudo apt install --only-upgrade python3-picamera2`"
STOP_TIMEOUT = 10.0  # seconds a camera may take to stop before we give up on it
BITRATE_RECHECK_MIN = 0.1  # seconds; a held-back bitrate change is retried no sooner


class CameraError(Exception):
    """The camera cannot be used right now; the message (one line) says why and what to do."""


# --------------------------------------------------------------------------
# picamera2, imported late (it is slow to import, and only on a Pi)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Picamera2Api:
    """The picamera2 names peercam uses, and what they tell about this machine."""

    Picamera2: Any
    H264Encoder: Any
    LibavH264Encoder: Any | None
    Output: type
    Transform: Any
    version: str
    fake: bool

    @property
    def software_encoder(self) -> bool:
        """True on a Pi 5: picamera2's ``H264Encoder`` is then its libx264 encoder."""
        return self.LibavH264Encoder is not None and self.H264Encoder is self.LibavH264Encoder


def load_picamera2() -> Picamera2Api:
    """Import picamera2 (the real one, or the fake under --fake-hardware).

    Raises SourceUnavailable, with the command that fixes it, when it is missing.
    """
    try:
        picamera2 = importlib.import_module("picamera2")
        encoders = importlib.import_module("picamera2.encoders")
        outputs = importlib.import_module("picamera2.outputs")
        libcamera = importlib.import_module("libcamera")
    except ImportError as exc:
        raise SourceUnavailable(
            f"[camera] source = 'picamera2' but picamera2 cannot be imported ({exc}): "
            + INSTALL_HELP
        ) from None
    fake = bool(getattr(picamera2, "__fake__", False))
    if fake:
        version = "fake"
    else:
        try:
            version = metadata.version("picamera2")
        except metadata.PackageNotFoundError:
            version = "unknown"
    return Picamera2Api(
        Picamera2=picamera2.Picamera2,
        H264Encoder=encoders.H264Encoder,
        LibavH264Encoder=getattr(encoders, "LibavH264Encoder", None),
        Output=outputs.Output,
        Transform=libcamera.Transform,
        version=version,
        fake=fake,
    )


# --------------------------------------------------------------------------
# Errors, as one precise line each
# --------------------------------------------------------------------------


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_missing_camera(exc: BaseException) -> bool:
    """``Picamera2(n)`` found no camera ``n``: a bare IndexError (up to 0.3.36) or 0.3.37's
    ``RuntimeError("No camera number n found - use \"rpicam-hello --list-cameras\" ...")``."""
    if isinstance(exc, IndexError):
        return True
    return isinstance(exc, RuntimeError) and str(exc).startswith("No camera number ")


def describe_open_error(exc: BaseException, index: int, cameras: list[dict[str, Any]]) -> str:
    """What ``Picamera2(index)`` failing with ``exc`` means for the person at the Pi."""
    if is_missing_camera(exc):
        if not cameras:
            return f"no camera detected: {NO_CAMERA_HELP}"
        models = ", ".join(
            f"{c.get('Num', i)}: {c.get('Model', '?')}" for i, c in enumerate(cameras)
        )
        return (
            f"no camera {index}: {len(cameras)} camera(s) detected ({models}); "
            f"set [camera] index to one of them"
        )
    texts = [str(e) for e in _chain(exc)]
    busy = any(
        getattr(e, "errno", None) == errno.EBUSY or "busy" in str(e).lower() for e in _chain(exc)
    )
    if busy:
        return (
            f"camera {index} is busy: another process is using it (another peercam, rpicam-*, "
            "motion...; `sudo fuser -v /dev/media* /dev/video*` shows which)"
        )
    if any("not found" in t.lower() for t in texts) and not cameras:
        return f"no camera detected: {NO_CAMERA_HELP}"
    detail = next((t for t in reversed(texts) if t), type(exc).__name__)
    return f"camera {index} cannot be opened: {detail}"


# --------------------------------------------------------------------------
# Encoder thread -> event loop
# --------------------------------------------------------------------------


class FrameHandover:
    """Takes access units on the encoder's thread, hands ``EncodedFrame`` s to the loop.

    - pts: the encoder's microsecond timestamp plus an offset chosen at the
      first frame so that this run continues where the previous one ended
      (``pts_base``); never decreasing, whatever the encoder says.
    - keyframe: read from the NAL units (an IDR slice), not the encoder's flag.
    - after ``close()`` or once the loop is closed nothing more is posted.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[int, EncodedFrame], None],
        *,
        generation: int,
        pts_base: int,
        frame_interval_us: int,
    ) -> None:
        self._loop = loop
        self._deliver = deliver
        self.generation = generation
        self._base = pts_base
        self._interval = frame_interval_us
        self._offset: int | None = None
        self._t0_us: int | None = None
        self.last_pts: int | None = None
        self.frames = 0
        self.closed = False
        self._failed = False

    def close(self) -> None:
        self.closed = True

    @property
    def next_pts(self) -> int:
        """Where the next run's pts should start."""
        return self._base if self.last_pts is None else self.last_pts + self._interval

    def _pts(self, timestamp: int | None) -> int:
        if timestamp is None:  # an encoder without timestamps: use our own clock
            now = time.monotonic_ns() // 1000
            self._t0_us = now if self._t0_us is None else self._t0_us
            timestamp = now - self._t0_us
        if self._offset is None:
            self._offset = self._base - int(timestamp)
        pts = self._offset + int(timestamp)
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        return pts

    def outputframe(self, frame: Any, keyframe: bool = True, timestamp: int | None = None) -> None:
        """Called on the encoder's thread; must never raise (that kills the thread)."""
        if self.closed:
            return
        try:
            data = frame if isinstance(frame, bytes) else bytes(frame)
            if not data:
                return
            encoded = EncodedFrame(data, self._pts(timestamp), h264.is_idr(data))
            self._loop.call_soon_threadsafe(self._deliver, self.generation, encoded)
            self.frames += 1
        except RuntimeError:  # the loop is closed: the daemon is going away
            self.closed = True
        except Exception:
            if not self._failed:
                self._failed = True
                log.exception("camera: an encoded frame could not be handed over")


@functools.cache
def hub_output_class(output_base: type) -> type:
    """A picamera2 ``Output`` subclass (of the imported picamera2) feeding a FrameHandover."""

    class HubOutput(output_base):  # type: ignore[misc, valid-type]
        def __init__(self, handover: FrameHandover) -> None:
            super().__init__()
            self.handover = handover

        def outputframe(self, frame, keyframe=True, timestamp=None, packet=None, audio=False):  # type: ignore[no-untyped-def]
            if audio:
                return  # picamera2's own audio path; peercam's microphone is separate
            self.handover.outputframe(frame, keyframe, timestamp)

    HubOutput.__qualname__ = HubOutput.__name__ = "PeercamHubOutput"
    return HubOutput


# --------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------


@dataclass
class _Run:
    camera: Any
    encoder: Any
    handover: FrameHandover
    model: str
    lores_encoder: Any = None  # the substream's encoder on the lores stream
    lores_handover: FrameHandover | None = None
    motion: LoresReader | None = None  # motion detection's reader of the lores Y plane


@dataclass
class _LoresTap:
    """The attached substream: where its frames go (kept across camera restarts)."""

    deliver: Callable[[EncodedFrame], None]
    on_fault: FaultSink


class Picamera2Source:
    """An ``EncodedSource`` for the Pi camera; one picamera2 session per hub start."""

    #: What a stall most likely means, for the hub's fault message.
    stall_hint = (
        "the camera stopped delivering: ribbon cable loose or unplugged, or encoder stalled"
    )

    def __init__(
        self, cfg: CameraConfig, api: Picamera2Api, substream: SubstreamSpec | None = None
    ) -> None:
        self.cfg = cfg
        self.api = api
        #: The ``lores`` stream's second encoder (None: no substream configured).
        self.substream = substream
        self._lores: _LoresTap | None = None
        self._lores_generation = 0
        self.info = VideoInfo(codec="H264", width=cfg.width, height=cfg.height, fps=cfg.fps)
        self.encoder_kind = "software" if api.software_encoder else "hardware"
        self.lores_encoder_kind = self.encoder_kind
        self.warnings: list[str] = []
        if api.software_encoder:
            self.warnings.append(
                "software H.264 encoding (this Pi has no hardware encoder, e.g. a Pi 5): "
                "high CPU use; lower [camera] width/height/fps if frames drop"
            )
        self.governor = BitrateGovernor(max_bps=cfg.bitrate, min_bps=cfg.lowest_bitrate)
        self.bitrate = cfg.bitrate
        self.model: str | None = None
        self._run: _Run | None = None
        self._bitrate_recheck: asyncio.TimerHandle | None = None
        self._generation = 0
        self._next_pts = 0
        self._sink: FrameSink | None = None
        self._on_fault: FaultSink | None = None
        self._checked_stream = False
        self._said: set[str] = set()  # one-time warnings already logged
        #: Motion detection: (sink, pictures per second, width) of the lores Y plane.
        self._motion: tuple[Callable[[np.ndarray], None], int, int] | None = None
        self._bitrate_control = True

    @property
    def frame_interval_us(self) -> int:
        return round(1_000_000 / self.cfg.fps)

    @property
    def running(self) -> bool:
        return self._run is not None

    def _say_once(self, key: str, level: int, message: str, *args: object) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, message, *args)

    # --- life -------------------------------------------------------------------

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        """Open, configure and start the camera and encoder; CameraError says why not."""
        if self._run is not None:
            return
        self._generation += 1
        self._sink, self._on_fault = sink, on_fault
        self._checked_stream = False
        handover = FrameHandover(
            asyncio.get_running_loop(),
            self._deliver,
            generation=self._generation,
            pts_base=self._next_pts,
            frame_interval_us=self.frame_interval_us,
        )
        try:
            self._run = await in_thread(
                self._open, handover, name="peercam-camera-open", discard=self._close_late_run
            )
        except BaseException:
            handover.close()
            self._sink = self._on_fault = None
            raise
        self.model = self._run.model
        self.governor.reset()
        self.bitrate = self.cfg.bitrate
        if self.governor.estimate is not None:  # viewers already told us their bandwidth
            self.set_bandwidth_estimate(self.governor.estimate)

    def set_motion_sink(
        self, sink: Callable[[np.ndarray], None] | None, *, fps: int = 5, width: int = 160
    ) -> None:
        """From the next start: a lores stream ``width`` wide whose Y plane goes to ``sink``."""
        self._motion = None if sink is None else (sink, fps, width)

    def _motion_picture(self, generation: int, picture: np.ndarray) -> None:
        motion = self._motion
        if motion is not None and generation == self._generation:
            motion[0](picture)

    def _open(self, handover: FrameHandover) -> _Run:
        """picamera2's blocking calls, on a worker thread."""
        api, cfg = self.api, self.cfg
        try:
            cameras = list(api.Picamera2.global_camera_info())
        except Exception as exc:
            raise CameraError(f"cannot list cameras: {exc or type(exc).__name__}") from None
        try:
            camera = api.Picamera2(camera_num=cfg.index)
        except (IndexError, RuntimeError) as exc:
            raise CameraError(describe_open_error(exc, cfg.index, cameras)) from None
        try:
            model = str(camera.camera_properties.get("Model", "camera"))
            self._configure(camera, model)
            encoder = self._make_encoder()
            output = hub_output_class(api.Output)(handover)
            try:
                camera.start_recording(encoder, output)
            except Exception as exc:
                raise CameraError(
                    f"camera {model} did not start recording: {exc or type(exc).__name__}"
                ) from None
            run = _Run(camera=camera, encoder=encoder, handover=handover, model=model)
            if self._lores is not None:
                self._start_lores(run)
            run.motion = self._start_motion(camera, handover)
        except BaseException:
            self._close_camera(camera)
            raise
        log.info(
            "camera %s (index %d) %dx%d@%d, %s H.264 encoder%s, %d kbit/s, IDR every %d frames%s",
            model,
            cfg.index,
            cfg.width,
            cfg.height,
            cfg.fps,
            self.encoder_kind,
            "" if api.software_encoder else f" (picamera2 {api.version})",
            cfg.bitrate // 1000,
            cfg.keyframe_interval,
            ", fake camera (--fake-hardware)" if api.fake else "",
        )
        return run

    # --- the one lores stream: the substream's encoder and motion detection share it ---

    def lores_stream_size(self) -> tuple[int, int] | None:
        """The lores stream's size: the substream's if there is one, else motion's, else None.

        picamera2 has one lores stream.  With a substream it runs at the
        substream's size (its encoder needs exactly that picture) and motion
        detection shrinks its Y plane; without one it is only as large as
        motion detection needs (less ISP and memory bandwidth).
        """
        if self.substream is not None:
            return self.substream.width, self.substream.height
        if self._motion is not None:
            return lores_size(self._motion[2], (self.cfg.width, self.cfg.height))
        return None

    def motion_size(self) -> tuple[int, int] | None:
        """The size of the luma picture motion detection gets (lores's aspect ratio)."""
        lores = self.lores_stream_size()
        if self._motion is None or lores is None:
            return None
        return lores_size(self._motion[2], lores)

    def _start_motion(self, camera: Any, handover: FrameHandover) -> LoresReader | None:
        """On a worker thread: read the lores Y plane for motion detection."""
        lores, size = self.lores_stream_size(), self.motion_size()
        if self._motion is None or lores is None or size is None:
            return None
        log.info(
            "motion: reading the lores stream's Y plane (%dx%d%s) %d times a second%s",
            *lores,
            ", the substream's" if self.substream is not None else "",
            self._motion[1],
            f", shrunk to {size[0]}x{size[1]}" if size != lores else "",
        )
        generation = handover.generation
        reader = LoresReader(
            camera,
            lores,
            self._motion[1],
            handover._loop,
            lambda picture: self._motion_picture(generation, picture),
            out_size=size,
        )
        reader.start()
        return reader

    def _configure(self, camera: Any, model: str) -> None:
        cfg = self.cfg
        duration = round(1_000_000 / cfg.fps)
        try:
            transform = self.api.Transform(rotation=cfg.rotation, hflip=cfg.hflip, vflip=cfg.vflip)
            lores = None
            size = self.lores_stream_size()  # the substream's encoder and/or motion detection
            if size is not None:
                lores = {"size": size, "format": "YUV420"}
            config = camera.create_video_configuration(
                main={"size": (cfg.width, cfg.height), "format": "YUV420"},
                lores=lores,
                transform=transform,
                controls={"FrameDurationLimits": (duration, duration)},
            )
            camera.configure(config)
        except Exception as exc:
            raise CameraError(
                f"camera {model} refused {cfg.width}x{cfg.height}@{cfg.fps} "
                f"(rotation {cfg.rotation}, hflip {cfg.hflip}, vflip {cfg.vflip}): "
                f"{exc or type(exc).__name__}"
            ) from None
        try:
            actual = tuple(camera.camera_configuration()["main"]["size"])
        except Exception:
            return
        if actual != (cfg.width, cfg.height):
            self._say_once(
                "size",
                logging.WARNING,
                "camera %s adjusted the picture to %dx%d (asked %dx%d)",
                model,
                actual[0],
                actual[1],
                cfg.width,
                cfg.height,
            )

    def _make_encoder(self, bitrate: int | None = None, iperiod: int | None = None) -> Any:
        cfg = self.cfg
        try:
            return self.api.H264Encoder(
                bitrate=bitrate or cfg.bitrate,
                repeat=True,
                iperiod=iperiod or cfg.keyframe_interval,
                framerate=cfg.fps,
                profile="baseline",
            )
        except TypeError as exc:
            raise CameraError(
                f"picamera2 {self.api.version} is too old: its H264Encoder cannot choose the "
                f"baseline profile ({exc}); browsers may show nothing. Upgrade: {UPGRADE_HELP}"
            ) from None

    # --- the substream: a second encoder on the lores stream (sources.substream.LoresTap) ---

    async def attach_lores(
        self, deliver: Callable[[EncodedFrame], None], on_fault: FaultSink
    ) -> None:
        """Encode the lores stream too, now if the camera runs, else from its next start."""
        if self.substream is None:
            raise CameraError("this camera source was configured without a substream")
        self._lores = _LoresTap(deliver, on_fault)
        run = self._run
        if run is not None and run.lores_encoder is None:
            await in_thread(self._start_lores, run, name="peercam-lores-start")

    async def detach_lores(self) -> None:
        self._lores = None
        self._lores_generation += 1
        run = self._run
        if run is None or run.lores_encoder is None:
            return
        encoder, run.lores_encoder = run.lores_encoder, None
        if run.lores_handover is not None:
            run.lores_handover.close()
        try:
            await asyncio.wait_for(
                in_thread(run.camera.stop_encoder, encoder, name="peercam-lores-stop"),
                STOP_TIMEOUT,
            )
        except Exception as exc:
            log.warning(
                "camera: the substream encoder did not stop cleanly: %s", exc or type(exc).__name__
            )

    def _start_lores(self, run: _Run) -> None:
        """On a worker thread: a second H264Encoder on the running camera's lores stream."""
        spec = self.substream
        assert spec is not None
        handover = FrameHandover(
            run.handover._loop,
            self._deliver_lores,
            generation=self._lores_generation,
            pts_base=run.handover.next_pts,
            frame_interval_us=self.frame_interval_us,
        )
        encoder = self._make_encoder(spec.bitrate, spec.keyframe_interval)
        output = hub_output_class(self.api.Output)(handover)
        try:
            run.camera.start_encoder(encoder, output, name="lores")
        except Exception as exc:
            handover.close()
            raise CameraError(
                f"camera {run.model}: the substream encoder did not start: "
                f"{exc or type(exc).__name__}"
            ) from None
        run.lores_encoder, run.lores_handover = encoder, handover

    def _deliver_lores(self, generation: int, frame: EncodedFrame) -> None:
        lores = self._lores
        if generation == self._lores_generation and lores is not None and self._run is not None:
            lores.deliver(frame)

    def request_lores_keyframe(self) -> None:
        run = self._run
        if run is None or run.lores_encoder is None:
            return
        if hasattr(run.lores_encoder, "force_key_frame"):
            run.lores_encoder.force_key_frame()
            return
        device = v4l2.device_of(run.lores_encoder)
        if device is not None:
            # refused: said once for the main encoder; the substream's periodic IDR follows
            with contextlib.suppress(OSError):
                v4l2.set_control(device, v4l2.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)

    def _close_late_run(self, run: _Run) -> None:
        """On the worker thread: the camera opened after its start was given up."""
        run.handover.close()
        if run.lores_handover is not None:
            run.lores_handover.close()
        if run.motion is not None:
            run.motion.stop()
        log.warning("camera %s opened after its start was given up; closing it again", run.model)
        self._close_camera(run.camera)

    def _close_camera(self, camera: Any) -> None:
        try:
            camera.stop_recording()  # stops the camera if started, then its encoders
        except Exception as exc:
            log.warning("camera did not stop cleanly: %s", exc or type(exc).__name__)
        try:
            camera.close()
        except Exception as exc:
            log.warning("camera did not close cleanly: %s", exc or type(exc).__name__)

    async def stop(self) -> None:
        """Stop recording and release the camera (bounded); late frames are dropped."""
        run, self._run = self._run, None
        self._generation += 1
        if self._bitrate_recheck is not None:
            self._bitrate_recheck.cancel()
            self._bitrate_recheck = None
        self._sink = self._on_fault = None
        if run is None:
            return
        run.handover.close()
        self._lores_generation += 1  # lores frames of this run still queued are dropped
        if run.lores_handover is not None:
            run.lores_handover.close()
        if run.motion is not None:
            await in_thread(run.motion.stop, name="peercam-motion-stop")
        self._next_pts = run.handover.next_pts
        try:
            await asyncio.wait_for(
                in_thread(self._close_camera, run.camera, name="peercam-camera-close"),
                STOP_TIMEOUT,
            )
        except TimeoutError:
            log.error(
                "camera %s did not stop within %.0f s; it may stay busy until peercam restarts",
                run.model,
                STOP_TIMEOUT,
            )

    def _deliver(self, generation: int, frame: EncodedFrame) -> None:
        """On the loop: pass a frame on, unless it belongs to a run that ended."""
        if generation != self._generation or self._sink is None:
            return
        if frame.keyframe and not self._checked_stream:
            self._checked_stream = True
            self._check_stream(frame.data)
        self._sink(frame)

    def _check_stream(self, data: bytes) -> None:
        """Say once if the encoder's first IDR is not what browsers need."""
        if not h264.has_parameter_sets(data):
            self._say_once(
                "sps",
                logging.WARNING,
                "camera: the first IDR carries no SPS/PPS; viewers cannot start decoding",
            )
        elif not h264.is_constrained_baseline(data):
            self._say_once(
                "profile",
                logging.WARNING,
                "camera: the encoder sends H.264 profile-level-id %s, not constrained baseline; "
                "Safari may show a black picture",
                h264.profile_level_id(data),
            )
        else:
            log.debug("camera: H.264 profile-level-id %s", h264.profile_level_id(data))

    # --- requests from the hub ------------------------------------------------------

    def request_keyframe(self) -> None:
        """Ask the running encoder for an IDR as soon as possible."""
        run = self._run
        if run is None:
            return
        encoder = run.encoder
        if hasattr(encoder, "force_key_frame"):  # picamera2 >= 0.3.32
            encoder.force_key_frame()
            return
        device = v4l2.device_of(encoder)
        if device is not None:  # older picamera2 on the hardware encoder: the driver's control
            try:
                v4l2.set_control(device, v4l2.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME, 1)
                return
            except OSError as exc:
                self._say_once(
                    "idr-ioctl",
                    logging.WARNING,
                    "camera: the encoder refused a forced key frame (%s)",
                    exc.strerror or exc,
                )
        self._say_once(
            "idr",
            logging.WARNING,
            "camera: picamera2 %s cannot force a key frame; new viewers wait for the next "
            "periodic one (every %d frames). Upgrade: %s",
            self.api.version,
            self.cfg.keyframe_interval,
            UPGRADE_HELP,
        )

    def set_bandwidth_estimate(self, bps: int | None) -> None:
        """The lowest viewer's REMB (None: no estimate); the encoder follows within bounds."""
        new = self.governor.update(bps)
        self._recheck_bitrate_later()
        if new is None or self._run is None or not self._bitrate_control:
            return
        if self._apply_bitrate(self._run.encoder, new):
            log.info(
                "camera: bitrate %d -> %d kbit/s (lowest viewer estimate %s)",
                self.bitrate // 1000,
                new // 1000,
                "none" if bps is None else f"{bps // 1000} kbit/s",
            )
            self.bitrate = new

    def _recheck_bitrate_later(self) -> None:
        """A change the governor held back is due later: ask again then, estimate or not."""
        if self._bitrate_recheck is not None:
            self._bitrate_recheck.cancel()
            self._bitrate_recheck = None
        delay = self.governor.retry_after()
        if delay is None or self._run is None or not self._bitrate_control:
            return
        self._bitrate_recheck = asyncio.get_running_loop().call_later(
            max(BITRATE_RECHECK_MIN, delay),
            lambda: self.set_bandwidth_estimate(self.governor.estimate),
        )

    def _apply_bitrate(self, encoder: Any, bps: int) -> bool:
        device = v4l2.device_of(encoder)
        if device is not None:
            try:
                v4l2.set_control(device, v4l2.V4L2_CID_MPEG_VIDEO_BITRATE, bps)
                return True
            except OSError as exc:
                self._bitrate_control = False
                log.warning(
                    "camera: the encoder refused a run-time bitrate change (%s); it stays at "
                    "%d kbit/s",
                    exc.strerror or exc,
                    self.bitrate // 1000,
                )
                return False
        stream = getattr(encoder, "_stream", None)  # picamera2's LibavH264Encoder (Pi 5)
        context = getattr(stream, "codec_context", None)
        if context is not None:
            context.bit_rate = bps  # libavcodec reconfigures x264 at the next frame
            return True
        self._bitrate_control = False
        self._say_once(
            "no-bitrate",
            logging.INFO,
            "camera: this encoder offers no run-time bitrate; it stays at %d kbit/s",
            self.bitrate // 1000,
        )
        return False


def make_picamera2_source(cfg: CameraConfig) -> Picamera2Source:
    """The configured camera source; SourceUnavailable if picamera2 is not installed."""
    api = load_picamera2()
    wanted, warning = cfg.substream_wanted(api.software_encoder)
    spec = (
        SubstreamSpec(
            cfg.substream_width,
            cfg.substream_height,
            cfg.substream_bitrate,
            cfg.substream_iperiod,
        )
        if wanted
        else None
    )
    source = Picamera2Source(cfg, api, spec)
    if warning is not None:
        source.warnings.append(warning)
        source._say_once("substream", logging.WARNING, "camera: %s", warning)
    if api.software_encoder:
        source._say_once("software", logging.WARNING, "camera: %s", source.warnings[0])
    return source


# Keep the names tests and the checker use in one place.
__all__ = [
    "CameraError",
    "FrameHandover",
    "Picamera2Api",
    "Picamera2Source",
    "describe_open_error",
    "hub_output_class",
    "load_picamera2",
    "make_picamera2_source",
]
