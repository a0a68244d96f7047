"""Fan-out of one encoded stream to many consumers.

The camera encodes once; the hub hands the same access units to every
session.  Each consumer has its own small bounded queue: a consumer that
falls behind loses the frames it could not take and waits for the next IDR
(it never makes memory grow, and never makes the others wait).  A new
consumer starts on an IDR, requested from the source when it first reads;
every IDR one consumer asks for goes through that consumer's back-off
(``keyframes.py``), since an IDR costs every viewer of the stream.

The hub also owns the source's life: started when the first consumer
arrives, stopped ``idle_stop`` seconds after the last leaves, restarted with
backoff when it fails to start or stops delivering frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

from .keyframes import KeyframeRequestLimiter
from .media import EncodedFrame, EncodedSource

log = logging.getLogger("peercam.hub")

#: Benchmarks only: set to "1" in the daemon's environment to turn IDR-on-join
#: off, so ``bench.first_frame`` can show what it buys.  Not a config key on
#: purpose: no deployment should run without it.
NO_IDR_ON_JOIN_ENV = "PEERCAM_BENCH_NO_IDR_ON_JOIN"


class SubscriptionClosed(Exception):
    """The hub or the consumer closed this subscription."""


class SourceState(StrEnum):
    IDLE = "idle"
    STARTING = "starting"
    STREAMING = "streaming"
    FAULT = "fault"


class Subscription:
    """One consumer's bounded view of the stream.

    A subscription takes frames only once its consumer has read: until the
    first ``get()`` (a session's sender starts reading when ICE and DTLS are
    up) it queues nothing, so a viewer still connecting can neither fall
    behind nor ask for IDRs.  Every IDR this consumer causes (joining,
    falling behind, its viewer's PLI/FIR through ``request_keyframe``) goes
    through its own ``KeyframeRequestLimiter``: an IDR goes to every viewer
    of the stream, so one consumer's trouble may cost the others at most
    the limiter's back-off.  A consumer that fell behind asks for its IDR
    when it reads again, not before: one that stopped reading asks nothing.
    """

    def __init__(
        self,
        hub: MediaHub,
        maxlen: int,
        name: str,
        limiter: KeyframeRequestLimiter | None = None,
        *,
        ask_on_join: bool = True,
    ) -> None:
        self._hub = hub
        #: Ask for an IDR at the first read (False: the consumer asks itself when it needs one).
        self.ask_on_join = ask_on_join
        self._queue: deque[EncodedFrame] = deque()
        self._maxlen = maxlen
        self._wakeup: asyncio.Future[None] | None = None
        self.name = name
        self.closed = False
        #: False until the consumer first reads (or ``activate()``): frames are not taken.
        self.active = False
        self.waiting_for_keyframe = True
        self.delivered = 0
        self.dropped = 0
        self.limiter = limiter or KeyframeRequestLimiter()
        #: IDR requests this consumer made that reached the hub / that its back-off held back.
        self.keyframe_requests = 0
        self.keyframe_requests_held = 0
        self._idr_due: str | None = None  # why an IDR is wanted at the next read
        self._read_since_drop = True
        #: Set whenever a frame is queued (a track waiting on two subscriptions).
        self.notify: asyncio.Event | None = None
        #: The viewer's latest bandwidth estimate (REMB), bit/s; None = unknown.
        self.bandwidth: int | None = None

    def activate(self) -> None:
        """Start taking frames (from the next IDR) and ask for one, as on a first read."""
        if self.active or self.closed:
            return
        self.active = True
        self.waiting_for_keyframe = True
        if self._hub.idr_on_join and self.ask_on_join:
            self.request_keyframe(f"{self.name} joined")

    def request_keyframe(self, why: str) -> bool:
        """Ask the hub for an IDR through this consumer's back-off; True when passed on."""
        if self.closed or self._hub.state is not SourceState.STREAMING:
            return False  # a fresh start begins with an IDR anyway
        if not self.limiter.allow(time.monotonic()):
            self.keyframe_requests_held += 1
            log.debug("%s: IDR request held back by its back-off (%s)", self.name, why)
            return False
        self.keyframe_requests += 1
        self._hub.request_keyframe(why)
        return True

    def _offer(self, frame: EncodedFrame) -> None:
        if not self.active:
            return
        if self.waiting_for_keyframe:
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
            self._idr_due = None  # the stream's own IDR came first
        if len(self._queue) >= self._maxlen:
            # Too slow: drop what is queued and resume at the next IDR, so
            # the viewer skips ahead instead of building up delay.  The IDR
            # is asked for at the consumer's next read: one that stopped
            # reading must not make the encoder send IDRs to everyone.
            self.dropped += len(self._queue)
            self._queue.clear()
            self.waiting_for_keyframe = True
            log.log(
                logging.INFO if self._read_since_drop else logging.DEBUG,
                "%s fell behind (%d frames queued): skipping to the next keyframe",
                self.name,
                self._maxlen,
            )
            self._read_since_drop = False
            self._idr_due = f"{self.name} fell behind"
            if not frame.keyframe:
                return
            self.waiting_for_keyframe = False
            self._idr_due = None
        self._queue.append(frame)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if self.notify is not None:
            self.notify.set()

    async def get(self) -> EncodedFrame:
        """The next frame; raises SubscriptionClosed once closed.

        The first call activates the subscription (joining: from the next
        IDR, requested now).
        """
        if not self.active:
            self.activate()
        self._read_since_drop = True
        if self._idr_due is not None and self.waiting_for_keyframe and not self._queue:
            why, self._idr_due = self._idr_due, None
            self.request_keyframe(why)
        while not self._queue:
            if self.closed:
                raise SubscriptionClosed(self.name)
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        self.delivered += 1
        return self._queue.popleft()

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def hub(self) -> MediaHub:
        return self._hub

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)
        if self.notify is not None:
            self.notify.set()
        self._hub._unsubscribe(self)


class MediaHub:
    """Owns one source and fans its frames out to subscriptions."""

    def __init__(
        self,
        source: EncodedSource,
        *,
        kind: str,
        queue_frames: int,
        idle_stop: float = 5.0,
        stall_timeout: float = 5.0,
        max_backoff: float = 30.0,
        on_state_change: Callable[[], None] | None = None,
        idr_on_join: bool = True,
        fault_level: int = logging.ERROR,
        start_timeout: float = 20.0,
    ) -> None:
        self.source = source
        #: A start that hangs (a wedged driver) is a failure like any other.
        self.start_timeout = start_timeout
        self.kind = kind
        self.queue_frames = queue_frames
        self.idle_stop = idle_stop
        self.stall_timeout = stall_timeout
        self.max_backoff = max_backoff
        self._on_state_change = on_state_change
        self.idr_on_join = idr_on_join
        #: Log level of a source's start failure (the same failure again logs at DEBUG).
        self.fault_level = fault_level
        self._subs: set[Subscription] = set()
        #: Observers of every frame (the recorder's pre-roll ring): no queue, no
        #: demand, never a keyframe request, so they cost the viewers nothing.
        self._taps: list[Callable[[EncodedFrame], None]] = []
        self._holds = 0
        self._wake = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._last_frame = 0.0
        self._keyframe_requested_at: float | None = None
        self._closing = False
        self._serial = 0
        self.state = SourceState.IDLE
        self.fault: str | None = None
        self.frames_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.starts = 0
        self._recent: deque[tuple[float, int]] = deque(maxlen=256)  # (arrival, bytes)

    # --- consumers ------------------------------------------------------------

    def subscribe(
        self,
        name: str = "",
        *,
        limiter: KeyframeRequestLimiter | None = None,
        ask_on_join: bool = True,
    ) -> Subscription:
        """A new consumer; the source starts now, frames flow from its first read.

        ``ask_on_join=False``: no IDR request at the first read; for a consumer that asks
        when it needs a picture (an SFU sends a PLI as each of its subscribers joins)."""
        if self._closing:
            raise SubscriptionClosed("hub is closing")
        self._serial += 1
        sub = Subscription(
            self,
            self.queue_frames,
            name or f"{self.kind}#{self._serial}",
            limiter,
            ask_on_join=ask_on_join,
        )
        self._subs.add(sub)
        self._demand_changed()
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)
        self._demand_changed()
        if sub.bandwidth is not None:
            self._bandwidth_changed()

    def report_bandwidth(self, sub: Subscription, bps: int) -> None:
        """A consumer's bandwidth estimate (REMB); the source follows the lowest one."""
        if sub.closed or sub.bandwidth == bps:
            return
        sub.bandwidth = bps
        self._bandwidth_changed()

    def _bandwidth_changed(self) -> None:
        follow = getattr(self.source, "set_bandwidth_estimate", None)
        if follow is None:
            return  # this source encodes at a fixed rate
        estimates = [s.bandwidth for s in self._subs if s.bandwidth is not None]
        try:
            follow(min(estimates) if estimates else None)
        except Exception:
            log.exception("%s source failed to take a bandwidth estimate", self.kind)

    def add_tap(self, tap: Callable[[EncodedFrame], None]) -> None:
        """Call ``tap(frame)`` on the loop for every frame; it must be quick and never raise."""
        self._taps.append(tap)

    def remove_tap(self, tap: Callable[[EncodedFrame], None]) -> None:
        with contextlib.suppress(ValueError):
            self._taps.remove(tap)

    def hold(self) -> None:
        """Keep the source running without a consumer (e.g. while a call rings)."""
        self._holds += 1
        self._demand_changed()

    def release(self) -> None:
        self._holds = max(0, self._holds - 1)
        self._demand_changed()

    @property
    def consumers(self) -> int:
        return len(self._subs)

    @property
    def wanted(self) -> bool:
        return bool(self._subs or self._holds) and not self._closing

    def request_keyframe(self, why: str = "") -> None:
        """Ask the source for an IDR, coalescing requests already in flight.

        Consumers call ``Subscription.request_keyframe`` (their back-off); this
        is for the hub's own reasons and for that method.
        """
        now = time.monotonic()
        if self.state is not SourceState.STREAMING:
            return  # a fresh start begins with an IDR anyway
        pending = self._keyframe_requested_at
        if pending is not None and now - pending < 1.0:
            return
        self._keyframe_requested_at = now
        log.debug("%s: keyframe requested (%s)", self.kind, why or "no reason given")
        try:
            self.source.request_keyframe()
        except Exception:
            log.exception("%s source failed to take a keyframe request", self.kind)

    # --- source side ------------------------------------------------------------

    def recent_bitrate(self, window: float = 2.0) -> float | None:
        """What the source sent over the last ``window`` seconds, bit/s (None: too little seen)."""
        now = time.monotonic()
        recent = [(t, n) for t, n in self._recent if now - t <= window]
        if len(recent) < 2 or self.state is not SourceState.STREAMING:
            return None
        span = max(recent[-1][0] - recent[0][0], 1e-3)
        return sum(n for _, n in recent[1:]) * 8 / span

    def _on_frame(self, frame: EncodedFrame) -> None:
        self._last_frame = time.monotonic()
        self.frames_in += 1
        self.bytes_in += len(frame.data)
        self._recent.append((self._last_frame, len(frame.data)))
        if frame.keyframe:
            self.keyframes_in += 1
            self._keyframe_requested_at = None
        if self.state is not SourceState.STREAMING:
            self._set_state(SourceState.STREAMING, None)
        for sub in tuple(self._subs):
            sub._offer(frame)
        for tap in tuple(self._taps):
            try:
                tap(frame)
            except Exception:
                log.exception("%s frame observer failed", self.kind)

    def _on_fault(self, message: str | None) -> None:
        if message is None:
            if self.state is SourceState.FAULT:
                self._set_state(SourceState.STREAMING, None)
            return
        log.warning("%s source fault: %s", self.kind, message)
        self._set_state(SourceState.FAULT, message)

    def _set_state(self, state: SourceState, fault: str | None) -> None:
        changed = (state, fault) != (self.state, self.fault)
        self.state, self.fault = state, fault
        if changed and self._on_state_change is not None:
            self._on_state_change()

    def _demand_changed(self) -> None:
        self._wake.set()
        if self.wanted and (self._supervisor is None or self._supervisor.done()):
            self._supervisor = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"peercam-hub-{self.kind}"
            )

    async def _wait_wake(self, timeout: float) -> bool:
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _supervise(self) -> None:
        """Start the source while it is wanted; restart it when it fails or stalls."""
        backoff = 1.0
        while self.wanted:
            self._set_state(SourceState.STARTING, self.fault)
            try:
                async with asyncio.timeout(self.start_timeout):
                    await self.source.start(self._on_frame, self._on_fault)
            except Exception as exc:  # a source's failure to start is data, not a crash
                message = str(exc) or type(exc).__name__
                if isinstance(exc, TimeoutError):
                    message = f"did not start within {self.start_timeout:g} s (driver hung?)"
                repeated = message == self.fault
                self._set_state(SourceState.FAULT, message)
                log.log(
                    logging.DEBUG if repeated else self.fault_level,
                    "%s source cannot start: %s (retrying in %.0f s)",
                    self.kind,
                    message,
                    backoff,
                )
                with contextlib.suppress(Exception):
                    await self.source.stop()
                deadline = time.monotonic() + backoff
                while self.wanted and time.monotonic() < deadline:
                    await self._wait_wake(deadline - time.monotonic())
                backoff = min(backoff * 2, self.max_backoff)
                continue
            self.starts += 1
            self._last_frame = time.monotonic()
            log.info("%s source started", self.kind)
            stalled = await self._watch()
            await self._stop_source()
            if stalled:
                await asyncio.sleep(min(backoff, 1.0))
                backoff = min(backoff * 2, self.max_backoff)
            else:
                backoff = 1.0
        self._set_state(SourceState.IDLE, None)

    async def _watch(self) -> bool:
        """Run until the source is no longer wanted (False) or stalls (True)."""
        idle_since: float | None = None
        while True:
            now = time.monotonic()
            if not self.wanted:
                if self._closing:
                    return False
                idle_since = idle_since or now
                if now - idle_since >= self.idle_stop:
                    log.info(
                        "%s: no consumer for %.0f s, stopping the source", self.kind, self.idle_stop
                    )
                    return False
            else:
                idle_since = None
            silent = now - self._last_frame
            if silent > self.stall_timeout:
                if self.state is SourceState.FAULT and self.fault:
                    # the source said why it went quiet: keep its words in status
                    log.info("%s source silent since its fault; restarting capture", self.kind)
                    return True
                hint = getattr(self.source, "stall_hint", "")
                message = (
                    f"no {self.kind} frame for {silent:.0f} s{f' ({hint})' if hint else ''}: "
                    "restarting capture"
                )
                log.log(self.fault_level, "%s", message)
                self._set_state(SourceState.FAULT, message)
                return True
            wait = self.stall_timeout / 4
            if idle_since is not None:
                wait = min(wait, max(0.0, self.idle_stop - (now - idle_since)))
            await self._wait_wake(max(wait, 0.01))

    async def _stop_source(self) -> None:
        try:
            await self.source.stop()
        except Exception:
            log.exception("%s source did not stop cleanly", self.kind)
        log.info("%s source stopped", self.kind)

    async def close(self) -> None:
        """Stop the source and end every subscription."""
        self._closing = True
        for sub in tuple(self._subs):
            sub.close()
        self._wake.set()
        task = self._supervisor
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), 10)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await self._stop_source()
