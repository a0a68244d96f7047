"""The life of a source whose capture runs on a thread of its own.

The test pattern and the microphones capture and encode on a worker thread
(as picamera2's encoder does) and hand each encoded frame to the event loop
with ``call_soon_threadsafe``.  Every start is a *run* with a generation
number, and everything a thread hands over carries it: once ``stop()`` has
bumped the generation, nothing from the old run reaches the sink, even a
frame already queued on the loop.  The timeline continues after the last
frame delivered, so a restart neither leaves a gap nor goes back in time.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..media import EncodedFrame, FaultSink, FrameSink
from ..threads import in_thread

log = logging.getLogger("peercam.sources")

JOIN_TIMEOUT = 5.0  # seconds stop() waits for a capture thread before leaving it behind


@dataclass(slots=True)
class Run:
    """What one capture thread is given; ``stop`` is the only thing it shares."""

    loop: asyncio.AbstractEventLoop
    generation: int
    pts_base: int  # the first frame's pts, microseconds
    stop: threading.Event


class ThreadedSource:
    """Generations, the thread-safe hand-over and a bounded stop, for one capture thread."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._run: Run | None = None
        self._generation = 0
        self._next_pts = 0
        self._sink: FrameSink | None = None
        self._on_fault: FaultSink | None = None

    @property
    def thread_name(self) -> str:
        return "peercam-source"

    @property
    def pts_step(self) -> int:
        """One frame's duration in microseconds: the next run starts this far after the last."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _launch(
        self, sink: FrameSink, on_fault: FaultSink, body: Callable[..., None], *args: Any
    ) -> None:
        """Start ``body(run, *args)`` on a new thread as the current run."""
        self._generation += 1
        self._sink, self._on_fault = sink, on_fault
        run = Run(
            loop=asyncio.get_running_loop(),
            generation=self._generation,
            pts_base=self._next_pts,
            stop=threading.Event(),
        )
        self._run = run
        self._thread = threading.Thread(
            target=body, args=(run, *args), name=self.thread_name, daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        """End the run: nothing more is delivered; the thread is joined off the loop."""
        thread, run = self._thread, self._run
        if thread is None or run is None:
            return
        self._generation += 1  # frames already queued on the loop are now ignored
        run.stop.set()
        await in_thread(thread.join, JOIN_TIMEOUT, name=f"{self.thread_name}-join")
        if thread.is_alive():
            log.warning(
                "%s: capture thread did not end within %g s; leaving it behind",
                self.thread_name,
                JOIN_TIMEOUT,
            )
        self._thread = self._run = None
        self._sink = self._on_fault = None

    def _post(self, run: Run, callback: Callable[..., None], *args: Any) -> None:
        """From the thread: run ``callback(run.generation, *args)`` on the loop.

        A closed loop (the daemon is going away) ends the thread.
        """
        try:
            run.loop.call_soon_threadsafe(callback, run.generation, *args)
        except RuntimeError:
            log.debug("%s: event loop closed; the thread ends", self.thread_name)
            run.stop.set()

    def _deliver(self, generation: int, frame: EncodedFrame) -> None:
        if generation == self._generation and self._sink is not None:
            self._next_pts = frame.pts + self.pts_step
            self._sink(frame)

    def _report(self, generation: int, message: str | None) -> None:
        if generation == self._generation and self._on_fault is not None:
            self._on_fault(message)
