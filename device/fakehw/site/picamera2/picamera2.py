"""Fake ``picamera2.picamera2``: the ``Picamera2`` class, for ``--fake-hardware`` and CI.

Signatures and defaults are picamera2 0.3.38's (``tests/test_fake_picamera2``
compares them with the real source).  Behaviour kept from the real class:

- ``Picamera2(n)`` with no camera ``n`` raises ``RuntimeError('No camera
  number n found - use "rpicam-hello --list-cameras" ...')`` (0.3.37+;
  before, the bare ``IndexError`` of ``global_camera_info()[camera_num]``);
  a camera another process holds
  raises ``RuntimeError("Camera __init__ sequence did not complete.")`` whose
  ``__cause__`` is libcamera's ``RuntimeError("Failed to acquire camera:
  Device or resource busy")``.
- ``start_recording`` configures (``"video"`` by default), starts the encoder,
  then the camera; ``stop_recording`` stops the camera, then the encoders.
- A pipeline thread calls ``encoder.encode(name, request)`` per frame; the
  encoders call ``Output.outputframe`` from their own threads.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

import libcamera

from . import _sim
from .encoders.encoder import Encoder
from .platform import Platform, get_platform

_log = logging.getLogger("picamera2.picamera2")

_FORMATS = ("YUV420", "YVU420", "XBGR8888", "XRGB8888", "RGB888", "BGR888")


class Picamera2:
    """Welcome to the (fake) PiCamera2 class."""

    platform = get_platform()

    @staticmethod
    def global_camera_info():
        """Id string and Model name for all attached cameras, one dict per camera."""
        ctrl = _sim.control(fresh=True)
        bus = "axi/pcie@120000/rp1/i2c@88000" if ctrl.platform == "pisp" else "soc/i2c0mux/i2c@1"
        cameras = [
            {
                "Model": model,
                "Location": 2,
                "Rotation": 180,
                "Id": f"/base/{bus}/{model}@{0x1A + num:x}",
                "Num": num,
            }
            for num, model in enumerate(ctrl.cameras)
        ]
        return sorted(cameras, key=lambda cam: ("/usb" not in cam["Id"], cam["Id"]), reverse=True)

    def __init__(self, camera_num=0, verbose_console=None, tuning=None, allocator=None):
        """Open camera ``camera_num`` (RuntimeError if there is none, or if it is busy)."""
        self._preview = None
        self.is_open = False
        self.started = False
        self.camera = None
        self.camera_config = {}
        self._encoders: set[Encoder] = set()
        self.lock = threading.Lock()
        self._sensor: _sim.Sensor | None = None
        self._controls: dict[str, Any] = {}
        self._captured = threading.Condition()
        self._last_request: Any = None
        self._requests = 0
        if camera_num >= len(self.global_camera_info()):
            raise RuntimeError(
                f'No camera number {camera_num} found - use "rpicam-hello --list-cameras" '
                "to check connected cameras"
            )
        camera_num = self.global_camera_info()[camera_num]["Num"]
        self.camera_idx = camera_num
        try:
            self._open_camera()
        except Exception as e:
            _log.error("Camera __init__ sequence did not complete.")
            raise RuntimeError("Camera __init__ sequence did not complete.") from e

    def _open_camera(self):
        ctrl = _sim.control(fresh=True)
        if self.camera_idx >= len(ctrl.cameras):
            raise RuntimeError("Failed to initialize camera")
        _sim.acquire(self.camera_idx)
        self.camera = ctrl.cameras[self.camera_idx]
        self._model = _sim.ctl.MODELS[self.camera]
        self.is_open = True
        state = _sim.state()
        state.add("opens")
        state.update(open=True, camera=self.camera_idx)
        _log.info("Camera now open.")

    @property
    def camera_properties(self):
        """Camera properties."""
        if self.camera is None:
            return {}
        return {
            "Model": self.camera,
            "Location": 2,
            "Rotation": 180,
            "PixelArraySize": self._model["resolution"],
            "ColorFilterArrangement": 0,
        }

    @property
    def camera_controls(self):
        fastest = max(fps for _, fps in self._model["modes"])
        return {
            "FrameDurationLimits": (int(1_000_000 / fastest), 1_000_000_000, 33333),
            "ExposureTime": (1, 66_666_666, 20_000),
            "NoiseReductionMode": (0, 4, 0),
        }

    @property
    def sensor_modes(self):
        """The available sensor modes."""
        return [
            {
                "format": self._model["format"],
                "unpacked": self._model["format"].replace("_CSI2P", ""),
                "bit_depth": self._model["bit_depth"],
                "size": size,
                "fps": fps,
                "crop_limits": (0, 0, *self._model["resolution"]),
                "exposure_limits": (1, 66_666_666, None),
            }
            for size, fps in self._model["modes"]
        ]

    def close(self):
        """Close camera."""
        if not self.is_open:
            return
        self.stop()
        _sim.release(self.camera_idx)
        self.is_open = False
        self.camera = None
        self.camera_config = {}
        _sim.state().update(open=False)
        _log.info("Camera closed successfully.")

    def create_video_configuration(
        self,
        main={},  # noqa: B006 - picamera2's own signature
        lores=None,
        raw={},  # noqa: B006
        transform=libcamera.Transform(),  # noqa: B008
        colour_space=None,
        buffer_count=6,
        controls={},  # noqa: B006
        display="main",
        encode="main",
        queue=True,
        sensor={},  # noqa: B006
        use_case="video",
    ):
        """Make a configuration suitable for video recording."""
        if self.camera is None:
            raise RuntimeError("Camera not opened")
        main = self._stream_config(
            {"format": "XBGR8888", "size": (1280, 720), "preserve_ar": True}, main
        )
        lores = self._stream_config(
            {"format": "YUV420", "size": main["size"], "preserve_ar": False}, lores
        )
        if colour_space is None:
            small = main["size"][0] < 1280 or main["size"][1] < 720
            colour_space = (
                libcamera.ColorSpace.Smpte170m() if small else libcamera.ColorSpace.Rec709()
            )
        controls = {"NoiseReductionMode": 1, "FrameDurationLimits": (33333, 33333)} | controls
        config = {
            "use_case": use_case,
            "transform": transform,
            "colour_space": colour_space,
            "buffer_count": buffer_count,
            "queue": queue,
            "main": main,
            "lores": lores,
            "raw": dict(raw) if raw is not None else None,
            "controls": controls,
            "sensor": sensor,
        }
        if display is not None and config.get(display) is None:
            raise RuntimeError(f"Display stream {display} was not defined")
        if encode is not None and config.get(encode) is None:
            raise RuntimeError(f"Encode stream {encode} was not defined")
        config["display"], config["encode"] = display, encode
        return config

    @staticmethod
    def _stream_config(stream_config, updates):
        if updates is None:
            return None
        valid = ("format", "size", "stride", "preserve_ar")
        for key, value in updates.items():
            if key not in valid:
                raise ValueError(f"Bad key {key!r}: valid stream configuration keys are {valid}")
            stream_config[key] = value
        size = stream_config["size"]
        stream_config["size"] = (
            size[0] - size[0] % 2,
            size[1] - size[1] % 2,
        )  # align_stream(optimal=False)
        return stream_config

    def configure(self, camera_config=None):
        """Configure the camera system with the given configuration."""
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        if camera_config is None or camera_config == "video":
            camera_config = self.create_video_configuration()
        if not isinstance(camera_config, dict):
            raise TypeError("Invalid type for `camera_config` given")
        config = dict(camera_config)
        main = dict(config["main"])
        width, height = main["size"]
        max_w, max_h = self._model["resolution"]
        if main["format"] not in _FORMATS:
            raise RuntimeError(f"Invalid format {main['format']} for main stream")
        if not (64 <= width <= max_w and 64 <= height <= max_h):
            raise RuntimeError(f"Invalid camera configuration: main size {main['size']}")
        if config["transform"].transpose:
            raise RuntimeError(
                f"Invalid camera configuration: {config['transform']} (no transpose)"
            )
        main["stride"] = width
        main["framesize"] = width * height * 3 // 2
        config["main"] = main
        if config.get("lores") is not None:
            lores = dict(config["lores"])
            lores_w, lores_h = lores["size"]
            if lores_w > width or lores_h > height:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
            if self.platform == Platform.VC4 and lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("the fake camera renders only YUV420 lores streams")
            lores["stride"] = lores_w
            lores["framesize"] = lores_w * lores_h * 3 // 2
            config["lores"] = lores
        self.camera_config = config
        self._controls = dict(config["controls"])
        _log.info("Configuration successful!")

    def camera_configuration(self):
        """Return the camera configuration."""
        return self.camera_config

    def start(self, config=None, show_preview=False):
        """Start the camera system running."""
        if not self.camera_config and config is None:
            config = "preview"
        if config is not None:
            self.configure(config)
        if not self.camera_config:
            raise RuntimeError("Camera has not been configured")
        if self.started:
            return
        width, height = self.camera_config["main"]["size"]
        duration = self._controls.get("FrameDurationLimits", (33333, 33333))[0]
        transform = self.camera_config["transform"]
        lores = self.camera_config.get("lores")
        self._sensor = _sim.Sensor(
            index=self.camera_idx,
            model=self.camera,
            width=width,
            height=height,
            frame_duration_us=int(duration),
            hflip=transform.hflip,
            vflip=transform.vflip,
            deliver=self._process_request,
            lores=tuple(lores["size"]) if lores is not None else None,
        )
        self._sensor.start()
        self.started = True
        state = _sim.state()
        state.add("starts")
        state.update(
            running=True,
            config={
                "size": [width, height],
                "format": self.camera_config["main"]["format"],
                "frame_duration_us": duration,
                "hflip": transform.hflip,
                "vflip": transform.vflip,
                "lores": list(lores["size"]) if lores is not None else None,
            },
        )
        _log.info("Camera started")

    def _process_request(self, request):
        with self.lock:
            encoders = list(self._encoders)
        for encoder in encoders:
            encoder.encode(encoder.name, request)
        with self._captured:
            self._last_request = request
            self._requests += 1
            self._captured.notify_all()
        request.release()

    def capture_array(self, name="main", wait=None, signal_function=None):
        """Make a 2d image from the next frame's ``name`` stream (a copy; encoders go on)."""
        if self.camera_config.get(name) is None:
            raise RuntimeError(f"Stream {name!r} is not configured")
        if not self.started:
            raise RuntimeError("Camera must be started before capturing")
        with self._captured:
            seen = self._requests
            if not self._captured.wait_for(lambda: self._requests > seen, timeout=wait or 5.0):
                raise TimeoutError("no frame from the camera (fake: stalled?)")
            return self._last_request.make_array(name).copy()

    def stop(self):
        """Stop the camera."""
        if not self.started:
            return
        sensor, self._sensor = self._sensor, None
        if sensor is not None:
            sensor.stop()
        self.started = False
        state = _sim.state()
        state.add("stops")
        state.update(running=False)
        _log.info("Camera stopped")

    def set_controls(self, controls):
        """Set camera controls (applied from the next start in the fake)."""
        self._controls.update(controls)

    def start_encoder(self, encoder=None, output=None, pts=None, quality=None, name=None):
        """Start encoder."""
        _encoder = encoder
        if _encoder is None:
            if len(self._encoders) > 1:
                raise RuntimeError("Multiple possible encoders, need to pass encoder")
            if len(self._encoders) == 1:
                _encoder = next(iter(self._encoders))
        if _encoder is None:
            raise RuntimeError("No encoder specified")
        if output is not None:
            if isinstance(output, str):
                raise RuntimeError("the fake picamera2 has no FileOutput; pass an Output")
            _encoder.output = output
        streams = self.camera_configuration()
        if not streams:
            raise RuntimeError("Camera has not been configured")
        if name is None:
            name = streams["encode"]
        if streams.get(name) is None:
            raise RuntimeError(f"Encode stream {name} was not defined")
        _encoder.name = name
        _encoder.width, _encoder.height = streams[name]["size"]
        _encoder.format = streams[name]["format"]
        _encoder.stride = streams[name]["stride"]
        min_frame_duration = max(self.camera_controls["FrameDurationLimits"][0], 33333)
        try:
            if _encoder.framerate is None:
                _encoder.framerate = 1000000 / min_frame_duration
        except AttributeError:
            pass
        _encoder.start(quality=quality)
        with self.lock:
            self._encoders.add(_encoder)

    def stop_encoder(self, encoders=None):
        """Stops the encoder."""
        if encoders is None:
            remove = list(self._encoders)
        elif isinstance(encoders, Encoder):
            remove = [encoders]
        else:
            remove = list(encoders)
        with self.lock:
            for encoder in remove:
                self._encoders.discard(encoder)
        for encoder in remove:
            encoder.stop()

    def start_recording(self, encoder, output, pts=None, config=None, quality=None, name=None):
        """Start recording a video using the given encoder and to the given output."""
        if not self.camera_config and config is None:
            config = "video"
        if config is not None:
            self.configure(config)
        self.start_encoder(encoder, output, pts=pts, quality=quality, name=name)
        self.start()

    def stop_recording(self):
        """Stop recording a video. The encode and output are stopped and closed."""
        self.stop()
        self.stop_encoder()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_traceback):
        self.close()

    def __del__(self):
        with contextlib.suppress(Exception):  # interpreter shutdown: nothing left to tell
            self.close()


__all__ = ["Picamera2", "Platform"]
