"""Which of the device's STUN/TURN servers answer, checked in the background.

aiortc gathers candidates inside every answer and waits up to 5 s for a
STUN or TURN server that does not reply.  With a dead server configured,
every viewer would wait those 5 s.  ``IceHealth`` probes each server the
device could use (``peercam.turn_probe``) at start, again after a real
gathering came back without the candidate a server should have given, and
on a timer (often while a server is down, rarely while it is up).  A server
that is down is left out of the device's RTCConfiguration until it answers
again; it is logged once and listed in ``status`` ``faults``.  Viewers keep
getting every configured URL: what the device cannot reach, they may.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from aiortc import RTCIceServer

from .ice import IceServers
from .turn_probe import ProbeResult, probe_url

log = logging.getLogger("peercam.ice")

Probe = Callable[..., Awaitable[ProbeResult]]


class ServerState(StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(slots=True)
class ServerHealth:
    url: str
    state: ServerState = ServerState.UNKNOWN
    detail: str = ""
    failures: int = 0
    next_check: float = 0.0  # monotonic
    last_suspect: float = float("-inf")


class IceHealth:
    """Background health checks for the device's STUN/TURN servers.

    Args:
        ice: the configured servers (its ``health`` is set to this object).
        on_change: called after any server changed state (republish status).
        timeout: seconds one probe may take; also bounds ``wait_ready``.
        recheck_down: first re-check of a server that is down, doubling to
            ``recheck_down_max``.
        recheck_up: re-check interval of a server that works.
        suspect_gap: minimum seconds between two checks triggered by gatherings.
    """

    def __init__(
        self,
        ice: IceServers,
        *,
        on_change: Callable[[], None] | None = None,
        timeout: float = 3.0,
        recheck_down: float = 10.0,
        recheck_down_max: float = 120.0,
        recheck_up: float = 600.0,
        suspect_gap: float = 10.0,
        probe: Probe = probe_url,
    ) -> None:
        self.ice = ice
        self.on_change = on_change
        self.timeout = timeout
        self.recheck_down = recheck_down
        self.recheck_down_max = recheck_down_max
        self.recheck_up = recheck_up
        self.suspect_gap = suspect_gap
        self._probe = probe
        self.servers = {url: ServerHealth(url) for url in ice.device_urls()}
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._in_use: list[str] = []
        ice.health = self

    # --- what the device asks -----------------------------------------------------

    def usable(self, url: str) -> bool:
        server = self.servers.get(url)
        return server is None or server.state is not ServerState.DOWN

    async def wait_ready(self) -> None:
        """Wait (bounded) until every server was checked once; at once when not started."""
        if self._ready is None or self._ready.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timeout + 1.0):
                await self._ready.wait()

    def faults(self) -> list[str]:
        """One line per server that is down, for ``status`` ``faults``."""
        return [
            f"ICE server {s.url}: {s.detail}"
            for s in self.servers.values()
            if s.state is ServerState.DOWN
        ]

    def note_gathering(self, servers: Sequence[RTCIceServer], candidate_types: set[str]) -> None:
        """A real gathering ended: a server whose candidate is missing gets re-checked now."""
        now = time.monotonic()
        for server in servers:
            url = server.urls if isinstance(server.urls, str) else server.urls[0]
            expected = "relay" if url.startswith(("turn:", "turns:")) else "srflx"
            health = self.servers.get(url)
            if health is None or expected in candidate_types:
                continue
            if now - health.last_suspect < self.suspect_gap:
                continue
            health.last_suspect = now
            log.info("%s gave no %s candidate to the last answer: checking it now", url, expected)
            health.next_check = now
            if self._wake is not None:
                self._wake.set()

    # --- life -----------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None or not self.servers:
            return
        self._wake = asyncio.Event()
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="peercam-ice-health")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def check_now(self) -> None:
        """Check every server once, now (also what the first round does)."""
        await asyncio.gather(*(self._check(s) for s in self.servers.values()))

    async def _run(self) -> None:
        assert self._wake is not None and self._ready is not None
        while True:
            now = time.monotonic()
            due = [s for s in self.servers.values() if s.next_check <= now]
            if due:
                await asyncio.gather(*(self._check(s) for s in due))
            if not self._ready.is_set():
                self._ready.set()
                self._report_in_use(force=True)
            self._wake.clear()
            wait = min(s.next_check for s in self.servers.values()) - time.monotonic()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    async def _check(self, server: ServerHealth) -> None:
        username, credential = self.ice.device_credentials()
        try:
            result = await self._probe(server.url, username, credential, timeout=self.timeout)
        except Exception as exc:  # a bug in a probe must not end the checks
            log.exception("checking %s failed", server.url)
            result = ProbeResult(server.url, False, f"check failed: {exc}", 0.0)
        now = time.monotonic()
        before = server.state
        if result.ok:
            server.state, server.detail, server.failures = ServerState.UP, result.detail, 0
            server.next_check = now + self.recheck_up
            if before is ServerState.DOWN:
                log.info("ICE server %s answers again: %s", server.url, result.detail)
            elif before is ServerState.UNKNOWN:
                log.info("ICE server %s works: %s", server.url, result.detail)
        else:
            server.failures += 1
            delay = min(self.recheck_down * 2 ** (server.failures - 1), self.recheck_down_max)
            server.next_check = now + delay
            changed = before is not ServerState.DOWN or server.detail != result.detail
            server.state, server.detail = ServerState.DOWN, result.detail
            if changed:
                log.warning(
                    "ICE server %s is down: %s; the device leaves it out until it answers "
                    "(checked again in %.0f s; viewers still get it)",
                    server.url,
                    result.detail,
                    delay,
                )
        if server.state is not before:
            self._report_in_use()
            if self.on_change is not None:
                self.on_change()

    def _report_in_use(self, force: bool = False) -> None:
        if self._ready is None or not self._ready.is_set():
            return  # the first round reports once, when it is complete
        in_use = [s.urls if isinstance(s.urls, str) else s.urls[0] for s in self.ice.for_device()]
        if in_use != self._in_use or force:
            self._in_use = in_use
            log.info(
                "the device's own ICE uses %s",
                ", ".join(in_use) if in_use else "host candidates only (no STUN/TURN works)",
            )
