"""The resource report: one parseable log line, and counts that follow real objects."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from aiortc import RTCPeerConnection

from peercam.resources import Counts, ResourceReport, ResourceReporter, measure
from tests.waiting import wait_until


def test_the_log_line_parses_back() -> None:
    report = ResourceReport(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
    line = f"2026-01-01 00:00:00,000 INFO peercam.resources: {report.line()}"
    assert ResourceReport.parse(line) == report
    assert ResourceReport.parse("INFO peercam.daemon: stopped") is None
    assert ResourceReport.parse("resources: rss_kib=1 fds=2") is None  # incomplete


async def test_peer_connections_tasks_and_fds_are_counted() -> None:
    def counts() -> Counts:
        return Counts(0, 0, 0, 0, 0)

    before = measure(counts)
    pcs = [RTCPeerConnection() for _ in range(3)]
    pcs[0].addTransceiver("video", direction="recvonly")
    await pcs[0].setLocalDescription(await pcs[0].createOffer())  # binds a UDP socket
    during = measure(counts)
    assert during.peer_connections == before.peer_connections + 3
    assert during.fds > before.fds
    assert before.rss_kib > 0 and before.threads >= 1 and before.tasks >= 1
    for pc in pcs:
        await pc.close()
    del pcs, pc
    await asyncio.sleep(0)
    after = measure(counts)
    assert after.peer_connections == before.peer_connections
    assert after.fds == before.fds


async def test_the_reporter_logs_a_line_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    reporter = ResourceReporter(0.05, lambda: Counts(1, 2, 3, 4, 5))

    def logged() -> list[ResourceReport]:
        return [r for r in map(ResourceReport.parse, caplog.messages) if r is not None]

    with caplog.at_level(logging.INFO, logger="peercam.resources"):
        task = asyncio.create_task(reporter.run())
        # (its first full collection of this test process's heap may take a while)
        await wait_until(lambda: len(logged()) >= 2, "two report lines")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    gc.unfreeze()  # the reporter froze this test process's heap
    reports = logged()
    assert len(reports) >= 2
    assert (reports[0].sessions, reports[0].consumers) == (1, 5)
