"""Read the daemon's ``resources:`` log lines (``[diagnostics] resources_every``).

Start the daemon with ``REPORTING`` merged into its config; then
``await next_report(daemon)`` is the first report logged from now on, and
``await settled(daemon, baseline)`` waits (bounded) until the daemon holds no
more than it did at ``baseline``, failing with the last reports seen.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from peercam.resources import ResourceReport
from tests.daemon_proc import DaemonProcess

INTERVAL = 0.5
#: config overrides: a report every INTERVAL s, and the camera off soon after the last viewer.
REPORTING = {"diagnostics": {"resources_every": INTERVAL}, "camera": {"idle_stop": 0.5}}


def reports(daemon: DaemonProcess) -> list[ResourceReport]:
    found = (ResourceReport.parse(line) for line in daemon.log_text().splitlines())
    return [r for r in found if r is not None]


async def next_report(
    daemon: DaemonProcess,
    predicate: Callable[[ResourceReport], bool] = lambda r: True,
    timeout: float = 30.0,
) -> ResourceReport:
    """The first report logged after this call that matches ``predicate`` (bounded)."""
    seen = len(reports(daemon))
    deadline = time.monotonic() + timeout
    while True:
        fresh = reports(daemon)[seen:]
        for report in fresh:
            if predicate(report):
                return report
        if not daemon.running:
            raise AssertionError(f"the daemon exited while we waited:\n{daemon.log_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"no matching resource report within {timeout:.0f} s; the last ones:\n"
                + "\n".join(r.line() for r in (fresh or reports(daemon))[-5:])
            )
        await asyncio.sleep(INTERVAL / 2)


def within(report: ResourceReport, baseline: ResourceReport, fd_slack: int = 0) -> bool:
    """Nothing held beyond the baseline: sessions, peer connections, tasks, fds, consumers."""
    return (
        report.sessions == 0
        and report.closing == 0
        and report.handshakes == 0
        and report.consumers == 0
        and report.peer_connections <= baseline.peer_connections
        and report.tasks <= baseline.tasks
        and report.threads <= baseline.threads
        and report.fds <= baseline.fds + fd_slack
    )


async def settled(
    daemon: DaemonProcess, baseline: ResourceReport, timeout: float = 30.0
) -> ResourceReport:
    """Wait until a report shows the daemon back at (or under) ``baseline``."""
    return await next_report(daemon, lambda r: within(r, baseline), timeout)


async def idle_baseline(daemon: DaemonProcess, timeout: float = 30.0) -> ResourceReport:
    """A report from a daemon at rest: no session, and the camera stopped again."""
    deadline = time.monotonic() + timeout
    while True:
        log = daemon.log_text()
        if log.count("video source stopped") >= log.count("video source started"):
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"the camera never stopped:\n{log}")
        await asyncio.sleep(0.1)
    return await next_report(
        daemon, lambda r: r.sessions == 0 and r.closing == 0 and r.consumers == 0, timeout
    )
