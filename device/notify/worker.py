"""A thread that sends to outside services, so a slow one never touches the event loop.

Notifications go to services the device does not control (ntfy, Telegram, a
push service).  Any of them can be slow, down or hanging; none of that may
delay a ring, a call or live video.  The loop only *enqueues* a job (never
blocks, never awaits the send); one daemon thread per channel runs the jobs
in order, each bounded by the client's own timeout.  A full queue drops the
oldest job (logged): a ring from minutes ago is worth less than this one.

Failures are logged once per streak per target ("ntfy://host: failing ...",
then quiet until it works again, then "... delivered again after N
failures"), so a dead service does not fill the journal on every ring.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger("peercam.notify")

QUEUE_LIMIT = 32  # jobs waiting per channel before the oldest is dropped


@dataclass(slots=True)
class Job:
    what: str  # for logs: "ring call abc (json://127.0.0.1:8080/x)"
    run: Callable[[], None]
    queued: float = field(default_factory=time.monotonic)


class Streaks:
    """Log a target's failure once per streak, and its recovery."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log = logger

    def failed(self, target: str, why: str) -> None:
        with self._lock:
            count = self._failures.get(target, 0) + 1
            self._failures[target] = count
        if count == 1:
            self._log.warning(
                "notify: %s: %s (further failures are not logged until it works again)",
                target,
                why,
            )
        else:
            self._log.debug("notify: %s: failed again (%d in a row): %s", target, count, why)

    def succeeded(self, target: str) -> None:
        with self._lock:
            count = self._failures.pop(target, 0)
        if count:
            self._log.info("notify: %s: delivered again after %d failure(s)", target, count)

    def failing(self, target: str) -> int:
        with self._lock:
            return self._failures.get(target, 0)


class SendWorker:
    """One daemon thread running ``Job``s in order; ``submit`` never blocks."""

    def __init__(self, name: str, limit: int = QUEUE_LIMIT) -> None:
        self.name = name
        self._jobs: collections.deque[Job] = collections.deque()
        self._limit = limit
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.dropped = 0
        self.busy_with: Job | None = None

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._closed:
                return
            if len(self._jobs) >= self._limit:
                old = self._jobs.popleft()
                self.dropped += 1
                log.warning(
                    "notify: %s: %d sends waiting (is a service hanging?); dropped the oldest: %s",
                    self.name,
                    self._limit,
                    old.what,
                )
            self._jobs.append(job)
            if self._thread is None:
                # A daemon thread: a send hanging at shutdown cannot keep the process alive.
                self._thread = threading.Thread(
                    target=self._run, name=f"peercam-{self.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._closed:
                    self._cond.wait()
                if self._closed and not self._jobs:
                    return
                job = self._jobs.popleft()
                self.busy_with = job
            try:
                job.run()
            except Exception:  # a job logs its own failures; this is a bug in one
                log.exception("notify: %s: %s failed unexpectedly", self.name, job.what)
            finally:
                self.busy_with = None

    def close(self, timeout: float = 2.0) -> None:
        """Let queued jobs finish for up to ``timeout`` s, then abandon them (daemon thread)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                busy = self.busy_with.what if self.busy_with else "?"
                log.warning(
                    "notify: %s: still sending at shutdown (%s); abandoned", self.name, busy
                )
