"""Fake ``picamera2.encoders``: ``H264Encoder`` is the V4L2 one on VC4, libav's on Pi 5."""

from picamera2.platform import Platform, get_platform

from .encoder import Encoder, Quality
from .libav_h264_encoder import LibavH264Encoder

_hw_encoder_available = get_platform() == Platform.VC4

if _hw_encoder_available:
    from .h264_encoder import H264Encoder
else:
    from .libav_h264_encoder import LibavH264Encoder as H264Encoder

__all__ = ["Encoder", "H264Encoder", "LibavH264Encoder", "Quality"]
