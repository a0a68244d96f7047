"""The Pi camera's small second stream for motion detection: picamera2's ``lores``.

picamera2's own motion examples read the lores stream's Y plane with
``capture_array("lores")``; each call waits for the next frame on the
camera's thread, copies the buffer (~40 KB at 160x120 YUV420) and releases
the request, while the H.264 encoder keeps getting every frame of ``main``.
This thread does that ``fps`` times a second and hands the Y plane to the
event loop; a failing capture is logged once and retried, never fatal to
live video.

picamera2 has one lores stream.  When the substream runs, its encoder needs
lores at the substream's size (e.g. 640x360), so motion detection reads that
same stream and shrinks its Y plane to the motion size (``shrink_luma``:
averaging whole blocks when the sizes divide, else every n-th pixel), a
fraction of a millisecond on the reader thread; without a substream lores is
configured at the motion size and nothing is shrunk.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("peercam.camera")


def lores_size(width: int, main: tuple[int, int]) -> tuple[int, int]:
    """An even lores size ``width`` wide (at most main's) with main's aspect ratio."""
    w = min(width, main[0]) & ~1
    h = max(2, round(w * main[1] / main[0]) & ~1)
    return w, h


def shrink_luma(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``y`` (a luma plane) at ``size`` (width, height), cheaply, as a new contiguous array.

    Whole-number factors average each block (area subsampling: sensor noise
    averages out as the ISP's own downscaler would); other ratios pick the
    nearest pixel.  Never larger than the input.
    """
    height, width = y.shape
    out_w, out_h = min(size[0], width), min(size[1], height)
    if (out_w, out_h) == (width, height):
        return np.ascontiguousarray(y)
    fx, fy = width // out_w, height // out_h
    if fx * out_w == width and fy * out_h == height:
        blocks = y.reshape(out_h, fy, out_w, fx).sum(axis=(1, 3), dtype=np.uint32)
        return ((blocks + fx * fy // 2) // (fx * fy)).astype(np.uint8)
    rows = np.arange(out_h) * height // out_h
    cols = np.arange(out_w) * width // out_w
    return y[rows[:, None], cols]


class LoresReader:
    """A thread that captures the lores Y plane and posts it to the loop.

    ``size`` is the lores stream's; ``out_size`` (default: the same) what
    motion detection gets.
    """

    def __init__(
        self,
        camera: Any,
        size: tuple[int, int],
        fps: int,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[np.ndarray], None],
        *,
        out_size: tuple[int, int] | None = None,
    ) -> None:
        self._camera = camera
        self._size = size
        self._out_size = out_size or size
        self._period = 1.0 / max(1, fps)
        self._loop = loop
        self._deliver = deliver
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peercam-lores", daemon=True)
        self.pictures = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        width, height = self._size
        failed = False
        next_at = time.monotonic()
        while not self._stop.wait(max(0.0, next_at - time.monotonic())):
            next_at += self._period
            try:
                array = self._camera.capture_array("lores")
                y = shrink_luma(array[:height, :width], self._out_size)
            except Exception as exc:
                if not failed:
                    log.warning("motion: cannot read the lores stream: %s", exc or type(exc))
                failed = True
                next_at = time.monotonic() + 1.0
                continue
            failed = False
            self.pictures += 1
            try:
                self._loop.call_soon_threadsafe(self._deliver, y)
            except RuntimeError:  # the loop closed: the daemon is going away
                return
