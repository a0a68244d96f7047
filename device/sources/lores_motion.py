"""The Pi camera's small second stream for motion detection: picamera2's ``lores``.

picamera2's own motion examples read the lores stream's Y plane with
``capture_array("lores")``; each call waits for the next frame on the
camera's thread, copies the buffer (~40 KB at 160x120 YUV420) and releases
the request, while the H.264 encoder keeps getting every frame of ``main``.
This thread does that ``fps`` times a second and hands the Y plane to the
event loop; a failing capture is logged once and retried, never fatal to
live video.
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


class LoresReader:
    """A thread that captures the lores Y plane and posts it to the loop."""

    def __init__(
        self,
        camera: Any,
        size: tuple[int, int],
        fps: int,
        loop: asyncio.AbstractEventLoop,
        deliver: Callable[[np.ndarray], None],
    ) -> None:
        self._camera = camera
        self._size = size
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
                y = np.ascontiguousarray(array[:height, :width])
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
