"""V4L2 encoding (as picamera2 0.3.38's ``encoders/v4l2_encoder.py``) over a fake device.

``_start`` opens the "device" (``self.vd``: a real file object whose
descriptor the fake's ioctl hook knows), ``_encode`` queues the picture,
and a poll thread (``thread_poll``, as the real one) encodes it and calls
``self.outputframe(bytes, keyframe, timestamp)``, with the timestamp the
picture was queued with.  ``VIDIOC_S_CTRL`` on ``self.vd`` changes the
bitrate or forces a key frame, as bcm2835-codec does.
"""

import logging
import queue
import threading

import av

from .. import _sim
from .encoder import Encoder

_log = logging.getLogger("picamera2.encoders")


class V4L2Encoder(Encoder):
    """V4L2 Encoding"""

    def __init__(self, bitrate, pixformat):
        super().__init__()
        self.bufs = {}
        self.bitrate = bitrate
        self._pixformat = pixformat
        self._controls = []
        self.vd = None
        self.framerate = None
        self._enable_framerate = False
        self._key_frames_requested = 0
        self._key_frames_generated = 0
        self._device_key_frames = 0
        self._codec = None

    # --- the fake device -------------------------------------------------------

    def _device_control(self, cid, value):
        if cid == _sim.V4L2_CID_MPEG_VIDEO_BITRATE:
            self.bitrate = value
            codec = self._codec
            if codec is not None:  # takes effect at the next frame (x264 reconfig)
                codec.bit_rate = value
            _sim.state().append("bitrates", value)
        elif cid == _sim.V4L2_CID_MPEG_VIDEO_FORCE_KEY_FRAME:
            self._device_key_frames += 1

    def _codec_settings(self):
        """(profile, iperiod, repeat) for libx264; H264Encoder knows them."""
        return None, None, True

    def _start(self):
        self.vd = _sim.V4L2Device(self._device_control).file
        profile, iperiod, repeat = self._codec_settings()
        self._codec = _sim.open_x264(
            width=self._width,
            height=self._height,
            framerate=self.framerate or 30,
            bitrate=self.bitrate or 10_000_000,
            iperiod=iperiod,
            profile=profile,
            repeat=repeat,
        )
        self.buf_frame = queue.Queue()
        self.thread = threading.Thread(target=self.thread_poll, args=(self.buf_frame,), daemon=True)
        self.thread.start()

    def _stop(self):
        self.buf_frame.put(None)
        self.thread.join()
        _sim._devices.pop(self.vd.fileno(), None)
        self.vd.close()
        self._codec = None

    def thread_poll(self, buf_frame):
        """Encodes queued pictures and outputs them (the fake's poll thread)."""
        forced_seen = 0
        while True:
            item = buf_frame.get()
            if item is None:
                break
            array, timestamp_us, force = item
            frame = av.VideoFrame.from_ndarray(array, format="yuv420p")
            frame.pts = timestamp_us
            if force or self._device_key_frames > forced_seen:
                forced_seen = self._device_key_frames
                frame.pict_type = av.video.frame.PictureType.I
                _sim.state().add("key_frames_forced")
            for packet in self._codec.encode(frame):
                b = bytes(packet)
                self.outputframe(b, packet.is_keyframe, timestamp_us)

    def _encode(self, stream, request):
        if self._output is None:
            return
        if self.vd is None or self.vd.closed:
            return
        force = False
        if self._key_frames_requested > self._key_frames_generated:
            self._key_frames_generated += 1
            force = True
        request.acquire()
        timestamp_us = self._timestamp(request)
        self.buf_frame.put((request.make_array(stream), timestamp_us, force))
        request.release()
