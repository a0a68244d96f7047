"""The call state machine: idle → ringing → answered → idle (or missed / declined).

An answer counts once it works: the first offer carrying the call *claims*
it (that session gets talkback; other offers for the call only watch), and
the call is ``answered`` when that session connects.  A claim whose session
fails first (a refused offer, no connection) puts the call back to ringing
until its original deadline, so a broken phone cannot swallow a visitor.

One place decides what a button press, a viewer's answer or decline, a ring
timeout and the end of the answering session mean.  Everything it touches
outside (MQTT events, the LED, the camera, snapshots, hanging up a session)
goes through ``CallHooks``, so the machine is tested on its own with a fake
clock-free loop and the daemon wires the real parts in.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum

from .call_log import CallLog
from .config import CallConfig

log = logging.getLogger("peercam.calls")


class CallState(StrEnum):
    IDLE = "idle"
    RINGING = "ringing"
    ANSWERED = "answered"


class CallEnd(StrEnum):
    ANSWERED = "answered"
    MISSED = "missed"
    DECLINED = "declined"
    CANCELLED = "cancelled"


@dataclass(slots=True)
class CallHooks:
    """What the call machine may do to the rest of the device."""

    publish_event: Callable[[dict[str, object]], Awaitable[bool]]
    status_changed: Callable[[], None]
    indicate: Callable[[CallState], None]  # the LED
    hold_media: Callable[[], None]  # keep the camera running while it rings
    release_media: Callable[[], None]
    snapshot: Callable[[], Awaitable[bytes | None]]
    hang_up: Callable[[str, str], Awaitable[None]]  # (viewer, session): end with bye hangup


class CallManager:
    """Owns the current call, its timer and the call log."""

    def __init__(
        self, config: CallConfig, hooks: CallHooks, call_log: CallLog, *, clock=time.monotonic
    ) -> None:
        self.config = config
        self.hooks = hooks
        self.log = call_log
        self._clock = clock
        self.state = CallState.IDLE
        self.call: str | None = None
        self.answered_by: tuple[str, str] | None = None  # (viewer, session)
        self.claimed_by: tuple[str, str] | None = None  # answering, not yet connected
        self._ring_deadline = 0.0  # loop time when the ringing call is missed
        self._timer: asyncio.TimerHandle | None = None
        self._holding = False
        self._last_press = float("-inf")
        self._ignored_presses = 0
        self._tasks: set[asyncio.Task[object]] = set()
        self.presses = 0

    # --- inputs -------------------------------------------------------------------

    def press(self) -> str:
        """The call button went down (on the loop thread).

        Returns what it did: ``"ring"`` (a new call), ``"again"`` (the call already
        rings), ``"call"`` (during an answered call) or ``"bounce"`` (ignored).
        """
        self.presses += 1
        now = self._clock()
        if now - self._last_press < self.config.min_press_interval:
            self._ignored_presses += 1
            if self._ignored_presses in (1, 10, 100) or self._ignored_presses % 1000 == 0:
                log.info(
                    "call button: %d press(es) within %.1f s of the previous one ignored "
                    "(bounce or impatience)",
                    self._ignored_presses,
                    self.config.min_press_interval,
                )
            return "bounce"
        self._last_press = now
        self._ignored_presses = 0
        if self.state is CallState.IDLE:
            self._ring()
            return "ring"
        if self.state is CallState.RINGING:
            log.info("call button pressed again: call %s is already ringing", self.call)
            return "again"
        if self.config.press_during_call == "hangup" and self.answered_by is not None:
            viewer, session = self.answered_by
            log.info("call button pressed during call %s: hanging up on %s", self.call, viewer)
            self._spawn(self.hooks.hang_up(viewer, session))
            self._to_idle()
        else:
            log.info("call button pressed during call %s: ignored", self.call)
        return "call"

    def claim(self, viewer: str, session: str, call: str) -> bool:
        """An offer carrying ``call``: True when this session is (still) the answering one.

        The call is answered once that session connects (``connected``).
        """
        if self.state is CallState.RINGING and call == self.call:
            if self.claimed_by is None:
                self._cancel_timer()  # the deadline stays, should this answer fail
                self.claimed_by = (viewer, session)
                log.info("call %s: %s is answering", call, viewer)
                return True
            if self.claimed_by == (viewer, session):
                return True  # the answering viewer re-offered the same session
        if self.state is CallState.ANSWERED and self.answered_by == (viewer, session):
            return True  # the answering viewer re-offered the same session
        if self.state is CallState.IDLE or call != self.call:
            why = "no call is ringing"
        elif self.state is CallState.RINGING:
            why = "another viewer is answering it"
        else:
            why = "another viewer answered first"
        log.info("%s offered to answer call %s, but %s: watching only", viewer, call, why)
        return False

    def connected(self, viewer: str, session: str) -> None:
        """A session connected; if it claimed the ringing call, the call is answered."""
        if self.state is not CallState.RINGING or self.claimed_by != (viewer, session):
            return
        self.claimed_by = None
        self.state = CallState.ANSWERED
        self.answered_by = (viewer, session)
        log.info("call %s answered by %s", self.call, viewer)
        self._end_event(CallEnd.ANSWERED, by=viewer)
        self.hooks.indicate(CallState.ANSWERED)
        self.hooks.status_changed()

    def decline(self, viewer: str, call: str) -> None:
        if self.state is CallState.RINGING and call == self.call and self.claimed_by is not None:
            log.info(
                "%s declined call %s while %s answers it: ignored", viewer, call, self.claimed_by[0]
            )
        elif self.state is CallState.RINGING and call == self.call:
            log.info("call %s declined by %s", call, viewer)
            self._end_event(CallEnd.DECLINED, by=viewer)
            self._to_idle()
        else:
            log.info("%s declined call %s, which is not ringing: ignored", viewer, call)

    def session_ended(self, viewer: str, session: str) -> None:
        """A session closed; if it was the answering one, the call is over."""
        if self.state is CallState.ANSWERED and self.answered_by == (viewer, session):
            log.info("call %s ended: %s left", self.call, viewer)
            self._to_idle()
        elif self.state is CallState.RINGING and self.claimed_by == (viewer, session):
            self.claimed_by = None
            left = self._ring_deadline - asyncio.get_running_loop().time()
            if left <= 0:
                log.info("call %s missed: %s's answer failed to connect", self.call, viewer)
                self._end_event(CallEnd.MISSED)
                self._to_idle()
                return
            log.info(
                "call %s: %s's answer failed to connect; ringing again (%.0f s left)",
                self.call,
                viewer,
                left,
            )
            self._timer = asyncio.get_running_loop().call_later(left, self._missed, self.call)

    def answering_viewer(self) -> str | None:
        """The viewer in the answered call, if a call is answered."""
        if self.state is CallState.ANSWERED and self.answered_by is not None:
            return self.answered_by[0]
        return None

    def is_answering(self, viewer: str) -> bool:
        return (
            self.state is CallState.ANSWERED
            and self.answered_by is not None
            and (self.answered_by[0] == viewer)
        )

    # --- transitions --------------------------------------------------------------

    def _ring(self) -> None:
        self.call = secrets.token_urlsafe(12)  # 16 characters of [A-Za-z0-9_-]
        self.state = CallState.RINGING
        self.answered_by = None
        self.claimed_by = None
        at = time.time()
        log.info(
            "call %s: the call button rang (%.0f s to answer)", self.call, self.config.ring_timeout
        )
        self.hooks.hold_media()
        self._holding = True
        self.hooks.indicate(CallState.RINGING)
        self.log.started(self.call, at)
        loop = asyncio.get_running_loop()
        self._ring_deadline = loop.time() + self.config.ring_timeout
        self._timer = loop.call_later(self.config.ring_timeout, self._missed, self.call)
        self._spawn(
            self.hooks.publish_event(
                {
                    "type": "call",
                    "call": self.call,
                    "expires_in": self.config.ring_timeout,
                    "at": round(at, 3),
                }
            )
        )
        self._spawn(self._snapshot(self.call))
        self.hooks.status_changed()

    def _missed(self, call: str) -> None:
        self._timer = None
        if self.state is CallState.RINGING and self.call == call and self.claimed_by is None:
            log.info("call %s missed: nobody answered in %.0f s", call, self.config.ring_timeout)
            self._end_event(CallEnd.MISSED)
            self._to_idle()

    def _end_event(self, reason: CallEnd, by: str | None = None) -> None:
        assert self.call is not None
        event: dict[str, object] = {"type": "call-ended", "call": self.call, "reason": str(reason)}
        if by is not None:
            event["by"] = by
        self.log.ended(self.call, str(reason), by)
        self._spawn(self.hooks.publish_event(event))
        self._spawn(self.log.publish())

    def _to_idle(self) -> None:
        self._cancel_timer()
        self.state = CallState.IDLE
        self.call = None
        self.answered_by = None
        self.claimed_by = None
        if self._holding:
            self._holding = False
            self.hooks.release_media()
        self.hooks.indicate(CallState.IDLE)
        self.hooks.status_changed()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _snapshot(self, call: str) -> None:
        jpeg = await self.hooks.snapshot()
        if jpeg is not None and self.log.add_snapshot(call, jpeg):
            await self.log.publish(snapshot_of=call)

    def _spawn(self, coro: Awaitable[object]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("call task failed: %s: %s", type(exc).__name__, exc)

    # --- shutdown -----------------------------------------------------------------

    async def close(self) -> None:
        """Shutting down: a ringing call is cancelled (dashboards stop ringing)."""
        if self.state is CallState.RINGING:
            log.info("call %s cancelled: the device is shutting down", self.call)
            self._end_event(CallEnd.CANCELLED)
        if self.state is not CallState.IDLE:
            self._to_idle()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=3.0)
        for task in self._tasks:
            task.cancel()
