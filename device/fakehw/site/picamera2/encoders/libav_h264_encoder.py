"""Software H.264 (as picamera2 0.3.38's ``encoders/libav_h264_encoder.py``): Pi 5's encoder.

The real class drives libx264 through PyAV on the camera's thread; so does
this one, with the real one's settings (ultrafast, zerolatency, gop =
iperiod, SPS/PPS repeated unless ``repeat=False``, microsecond time base).
"""

from fractions import Fraction
from math import sqrt

import av

from .. import _sim
from .encoder import Encoder, Quality


class LibavH264Encoder(Encoder):
    """Encoder class that uses libx264 for h.264 encoding."""

    def __init__(self, bitrate=None, repeat=True, iperiod=30, framerate=30, qp=None, profile=None):
        super().__init__()
        self._codec = "h264"
        self.repeat = repeat
        self.bitrate = bitrate
        self.iperiod = iperiod
        self.framerate = framerate
        self.qp = qp
        self.profile = profile
        self.preset = None
        self.drop_final_frames = False
        self.threads = 0
        self._key_frames_requested = 0
        self._key_frames_generated = 0

    def _setup(self, quality):
        if quality is not None or (
            getattr(self, "bitrate", None) is None and getattr(self, "qp", None) is None
        ):
            quality = Quality.MEDIUM if quality is None else quality
            bitrate_table = {
                Quality.VERY_LOW: 3,
                Quality.LOW: 4,
                Quality.MEDIUM: 7,
                Quality.HIGH: 10,
                Quality.VERY_HIGH: 14,
            }
            reference_complexity = 1920 * 1080 * 30
            actual_complexity = self.width * self.height * getattr(self, "framerate", 30)
            reference_bitrate = bitrate_table[quality] * 1000000
            self.bitrate = int(reference_bitrate * sqrt(actual_complexity / reference_complexity))

    def _start(self):
        self._container = av.open("/dev/null", "w", format="null")
        self._stream = self._container.add_stream(
            "libx264", rate=Fraction(self.framerate).limit_denominator(1000)
        )
        self._stream.codec_context.thread_count = self.threads
        self._stream.codec_context.thread_type = av.codec.context.ThreadType.FRAME
        self._stream.width = self.width
        self._stream.height = self.height
        self._stream.pix_fmt = "yuv420p"
        preset = "ultrafast"
        if self.profile is not None:
            if not isinstance(self.profile, str):
                raise RuntimeError("Profile should be a string value")
            profile = None
            for available_profile in self._stream.profiles:
                if self.profile.lower() == available_profile.lower():
                    profile = available_profile
                    break
            if not profile:
                raise RuntimeError("Profile " + self.profile + " not recognised")
            self._stream.codec_context.profile = profile
            if "baseline" not in profile.lower():
                preset = "superfast"
        if self.bitrate is not None:
            self._stream.codec_context.bit_rate = self.bitrate
        self._stream.codec_context.gop_size = self.iperiod or (1 << 31) - 1
        if self.preset:
            preset = self.preset
        self._stream.codec_context.options["preset"] = preset
        self._stream.codec_context.options["deblock"] = "1"
        if not self.repeat:
            # As picamera2 0.3.36 writes it; PyAV >= 14 spells the flag global_header,
            # so the real encoder fails here too with repeat=False (peercam passes True).
            self._stream.codec_context.flags |= av.codec.context.Flags.GLOBAL_HEADER
        if self.qp is not None:
            self._stream.codec_context.qmin = self.qp
            self._stream.codec_context.qmax = self.qp
        self._stream.codec_context.time_base = Fraction(1, 1000000)
        self._stream.codec_context.options["tune"] = "zerolatency"
        _sim.state().update(
            **{
                "lores_encoder" if self.name == "lores" else "encoder": {
                    "class": "LibavH264Encoder",
                    "hardware": False,
                    "bitrate": self.bitrate,
                    "iperiod": self.iperiod,
                    "repeat": self.repeat,
                    "profile": self.profile,
                    "framerate": self.framerate,
                }
            }
        )

    def _stop(self):
        if not self.drop_final_frames:
            for packet in self._stream.encode():
                self.outputframe(
                    bytes(packet), packet.is_keyframe, timestamp=packet.pts, packet=packet
                )
        self._container.close()

    def _encode(self, stream, request):
        request.acquire()
        timestamp_us = self._timestamp(request)
        frame = av.VideoFrame.from_ndarray(request.make_array(stream), format="yuv420p")
        frame.pts = timestamp_us
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            frame.pict_type = av.video.frame.PictureType.I
            _sim.state().add("key_frames_forced")
        for packet in self._stream.encode(frame):
            self.outputframe(bytes(packet), packet.is_keyframe, timestamp=packet.pts, packet=packet)
        request.release()

    def force_key_frame(self):
        """Force a key frame to be encoded in the video stream as soon as possible."""
        self._key_frames_requested += 1
