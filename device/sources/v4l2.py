"""The two V4L2 controls peercam sets on the Pi's H.264 encoder at run time.

picamera2 opens the encoder device (``/dev/video11``, bcm2835-codec) as
``encoder.vd`` and configures it once at start; it has no public call to
change the bitrate of a running encoder, and versions before 0.3.32 have no
``force_key_frame()``.  The driver itself takes both at any time through
``VIDIOC_S_CTRL`` (bcm2835-v4l2-codec.c: ``V4L2_CID_MPEG_VIDEO_BITRATE`` ->
``MMAL_PARAMETER_VIDEO_BIT_RATE``, ``V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME`` ->
``MMAL_PARAMETER_VIDEO_REQUEST_I_FRAME``).  Values from the kernel's
``linux/videodev2.h`` and ``linux/v4l2-controls.h``.
"""

from __future__ import annotations

import fcntl
import struct
from typing import Any

_IOC_WRITE, _IOC_READ = 1, 2
_IOC_NRSHIFT, _IOC_TYPESHIFT, _IOC_SIZESHIFT, _IOC_DIRSHIFT = 0, 8, 16, 30

#: struct v4l2_control { __u32 id; __s32 value; }
_V4L2_CONTROL = struct.Struct("=Ii")


def _iowr(kind: str, nr: int, size: int) -> int:
    return (
        ((_IOC_READ | _IOC_WRITE) << _IOC_DIRSHIFT)
        | (size << _IOC_SIZESHIFT)
        | (ord(kind) << _IOC_TYPESHIFT)
        | (nr << _IOC_NRSHIFT)
    )


VIDIOC_S_CTRL = _iowr("V", 28, _V4L2_CONTROL.size)  # 0xC008561C
V4L2_CID_CODEC_BASE = 0x00990000 | 0x900
V4L2_CID_MPEG_VIDEO_BITRATE = V4L2_CID_CODEC_BASE + 207
V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME = V4L2_CID_CODEC_BASE + 229


def set_control(device: Any, control_id: int, value: int) -> None:
    """``VIDIOC_S_CTRL`` on an open V4L2 device (file object or descriptor); OSError on refusal."""
    buf = bytearray(_V4L2_CONTROL.pack(control_id, value))
    fcntl.ioctl(device, VIDIOC_S_CTRL, buf, True)


def device_of(encoder: Any) -> Any | None:
    """picamera2's open encoder device (``encoder.vd``), or None (software encoder, stopped)."""
    vd = getattr(encoder, "vd", None)
    if vd is None or getattr(vd, "closed", False):
        return None
    return vd
