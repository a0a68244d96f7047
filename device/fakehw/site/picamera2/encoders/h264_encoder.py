"""H264 encoder (as picamera2 0.3.38's ``encoders/h264_encoder.py``) on the fake V4L2 device."""

from picamera2.encoders import Quality
from picamera2.encoders.v4l2_encoder import V4L2Encoder

from .. import _sim

V4L2_PIX_FMT_H264 = 0x34363248  # v4l2_fourcc('H', '2', '6', '4')


class H264Encoder(V4L2Encoder):
    """Uses functionality from V4L2Encoder"""

    def __init__(
        self,
        bitrate=None,
        repeat=True,
        iperiod=None,
        framerate=None,
        enable_sps_framerate=False,
        qp=None,
        profile=None,
    ):
        super().__init__(bitrate, V4L2_PIX_FMT_H264)
        self.iperiod = iperiod
        self.repeat = repeat
        self.qp = qp
        self.profile = profile
        self.framerate = framerate
        self._enable_framerate = enable_sps_framerate

    def _codec_settings(self):
        return self.profile, self.iperiod, self.repeat

    def _start(self):
        profile_lookup = ("baseline", "constrained baseline", "main", "high")
        if self.profile:
            if not isinstance(self.profile, str):
                raise RuntimeError("Profile should be a string value")
            if self.profile.lower() not in profile_lookup:
                raise RuntimeError("Profile " + self.profile + " not recognised")
        _sim.state().update(
            **{
                "lores_encoder" if self.name == "lores" else "encoder": {
                    "class": "H264Encoder",
                    "hardware": True,
                    "bitrate": self.bitrate,
                    "iperiod": self.iperiod,
                    "repeat": self.repeat,
                    "profile": self.profile,
                    "framerate": self.framerate,
                }
            }
        )
        super()._start()

    def _setup(self, quality):
        if quality is not None or (
            getattr(self, "bitrate", None) is None and getattr(self, "qp", None) is None
        ):
            quality = Quality.MEDIUM if quality is None else quality
            bitrate_table = {
                Quality.VERY_LOW: 2,
                Quality.LOW: 4,
                Quality.MEDIUM: 6,
                Quality.HIGH: 9,
                Quality.VERY_HIGH: 15,
            }
            reference_complexity = 1920 * 1080 * 30
            actual_complexity = self.width * self.height * getattr(self, "framerate", 30)
            reference_bitrate = bitrate_table[quality] * 1000000
            self.bitrate = int(reference_bitrate * actual_complexity / reference_complexity)

    def force_key_frame(self):
        """Force a key frame to be encoded in the video stream as soon as possible."""
        self._key_frames_requested += 1
