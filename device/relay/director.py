"""Who watches where: peer-to-peer up to ``p2p_viewers``, the SFU beyond (or always).

A relayed viewer subscribes at the SFU, which the device never sees, so the
device counts *leases*: ``hello`` for a session that goes through the SFU
takes one (``welcome.relay`` tells the viewer where to subscribe), the
viewer renews it with ``hello`` every ``relay.renew`` seconds, and ``bye``
(or its last will) ends it.  The publisher runs while leases exist (plus
``linger`` seconds), or always with ``publish = "always"``.

When the SFU is down (the publisher is in fault) new viewers are served
peer-to-peer up to ``[webrtc] max_viewers`` instead of waiting on it;
viewers already relayed keep their lease and resubscribe once the new feed
shows in ``status.relay``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..config import RelayConfig
from . import Publisher, PublishState

log = logging.getLogger("peercam.relay")

TICK = 1.0  # s between lease checks


class RelayDirector:
    def __init__(
        self, config: RelayConfig, publisher: Publisher, on_change: Callable[[], None]
    ) -> None:
        self.config = config
        self.publisher = publisher
        self._on_change = on_change
        self.leases: dict[tuple[str, str], float] = {}  # (viewer, session) → expiry
        self._last_lease_at: float | None = None
        self._task: asyncio.Task[None] | None = None

    # --- policy ---------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False while the SFU cannot be used (the publisher is in fault)."""
        return self.publisher.state is not PublishState.FAULT

    def p2p_limit(self, max_viewers: int) -> int:
        """Peer-to-peer sessions allowed now (answering a call is never limited by it)."""
        if not self.available:
            return max_viewers
        if self.config.policy == "always":
            return 0
        return min(self.config.p2p_viewers, max_viewers)

    def place(self, viewer: str, session: str, p2p_sessions: int, max_viewers: int) -> bool:
        """At ``hello``: True (and a lease taken or renewed) when it goes through the SFU."""
        key = (viewer, session)
        if key not in self.leases and p2p_sessions < self.p2p_limit(max_viewers):
            return False
        self._lease(key)
        return True

    def _lease(self, key: tuple[str, str]) -> None:
        new = key not in self.leases
        now = time.monotonic()
        self.leases[key] = now + self.config.lease
        self._last_lease_at = now
        if new:
            log.info(
                "%s/%s watches through the SFU (%d relayed viewer(s))",
                key[0],
                key[1][:12],
                len(self.leases),
            )
            self._update()

    def drop(self, viewer: str, session: str) -> None:
        if self.leases.pop((viewer, session), None) is not None:
            self._last_lease_at = time.monotonic()
            self._update()

    def has_viewer(self, viewer: str) -> bool:
        return any(v == viewer for v, _ in self.leases)

    def drop_viewer(self, viewer: str) -> None:
        for key in [k for k in self.leases if k[0] == viewer]:
            self.drop(*key)

    def where(self) -> dict[str, object]:
        """``welcome.relay`` / ``error.relay``: where to subscribe, and how often to renew."""
        return {**self.publisher.where(), "renew": round(self.config.lease / 3)}

    def status(self) -> dict[str, object]:
        return {
            **self.publisher.where(),
            "viewers": len(self.leases),
            "p2p_viewers": self.config.p2p_viewers,
            "policy": self.config.policy,
        }

    def faults(self) -> list[str]:
        fault = self.publisher.fault
        return [f"relay: {fault}"] if fault else []

    # --- life -----------------------------------------------------------------------

    def _wanted(self, now: float) -> bool:
        if self.config.publish == "always" or self.leases:
            return True
        last = self._last_lease_at
        return last is not None and now - last < self.config.linger

    def _update(self) -> None:
        self.publisher.set_wanted(self._wanted(time.monotonic()))
        self._on_change()

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            expired = [k for k, until in self.leases.items() if until <= now]
            for key in expired:
                log.info("%s/%s: relay lease expired (no renewal)", key[0], key[1][:12])
                del self.leases[key]
            if expired:
                self._on_change()
            self.publisher.set_wanted(self._wanted(now))
            await asyncio.sleep(TICK)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peercam-relay")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.publisher.close()
