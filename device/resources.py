"""What the daemon holds, in one log line: memory, file descriptors, tasks, peer connections.

A door camera runs for months; a leak shows as a trend long before it
hurts.  ``ResourceReporter`` logs ``resources: rss_kib=... fds=... tasks=...``
every ``[diagnostics] resources_every`` seconds (hourly by default), readable
in ``journalctl -u peercam | grep resources:``.  The soak benchmark and the
fault tests read the same line (``ResourceReport.parse``), so what they
check is what an operator sees.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields

from aiortc import RTCPeerConnection

log = logging.getLogger("peercam.resources")

PREFIX = "resources:"
_FIELD = re.compile(r"(\w+)=(-?\d+)")


@dataclass(frozen=True, slots=True)
class ResourceReport:
    rss_kib: int  # resident memory
    fds: int  # open file descriptors (sockets included)
    tasks: int  # asyncio tasks not done
    threads: int
    peer_connections: int  # RTCPeerConnection objects alive (after a garbage collection)
    sessions: int  # sessions in signaling's table (what status.viewers counts)
    handshakes: int  # of those, not yet connected
    closing: int  # sessions out of the table but not yet released
    inboxes: int  # viewer records (rate limits) kept by signaling
    consumers: int  # hub subscriptions, all media

    def line(self) -> str:
        return PREFIX + " " + " ".join(f"{k}={v}" for k, v in asdict(self).items())

    @classmethod
    def parse(cls, line: str) -> ResourceReport | None:
        """The report in a log line, or None when the line holds none."""
        _, found, rest = line.partition(PREFIX)
        if not found:
            return None
        values = {k: int(v) for k, v in _FIELD.findall(rest)}
        names = [f.name for f in fields(cls)]
        if not all(n in values for n in names):
            return None
        return cls(**{n: values[n] for n in names})


def rss_kib() -> int:
    """Resident set size of this process in KiB (Linux; 0 where /proc is missing)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds() -> int:
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir opened
    except OSError:
        return 0


def live_peer_connections() -> int:
    """RTCPeerConnection objects still alive: closed-but-referenced ones are leaks too."""
    return sum(1 for obj in gc.get_objects() if isinstance(obj, RTCPeerConnection))


@dataclass(frozen=True, slots=True)
class Counts:
    """What the daemon's own parts report (signaling and hubs)."""

    sessions: int
    handshakes: int
    closing: int
    inboxes: int
    consumers: int


def measure(counts_of: Callable[[], Counts]) -> ResourceReport:
    """Collect garbage first: what is left alive afterwards is really held."""
    gc.collect()
    counts = counts_of()
    return ResourceReport(
        rss_kib=rss_kib(),
        fds=open_fds(),
        tasks=sum(1 for t in asyncio.all_tasks() if not t.done()),
        threads=threading.active_count(),
        peer_connections=live_peer_connections(),
        sessions=counts.sessions,
        handshakes=counts.handshakes,
        closing=counts.closing,
        inboxes=counts.inboxes,
        consumers=counts.consumers,
    )


class ResourceReporter:
    """Logs a ``ResourceReport`` every ``interval`` seconds until cancelled."""

    def __init__(self, interval: float, counts: Callable[[], Counts]) -> None:
        self.interval = interval
        self._counts = counts

    def report(self) -> ResourceReport:
        report = measure(self._counts)
        log.info("%s", report.line())
        return report

    async def run(self) -> None:
        # Move everything alive at start-up (modules, config, the daemon's
        # parts) out of the collector's reach: the full collection in each
        # report then walks only what was made since, a few milliseconds
        # instead of a noticeable pause of the loop on a small Pi.
        gc.collect()
        gc.freeze()
        while True:
            self.report()
            await asyncio.sleep(self.interval)


def consumers_of(hubs: Iterable[object | None]) -> int:
    return sum(getattr(h, "consumers", 0) for h in hubs if h is not None)
