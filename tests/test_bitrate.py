"""The encoder follows the slowest viewer: governor rules and the hub's part."""

from __future__ import annotations

import asyncio

import pytest

from peercam.bitrate import BitrateGovernor
from peercam.hub import MediaHub
from peercam.media import FaultSink, FrameSink


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def governor(clock: Clock, **kw: int) -> BitrateGovernor:
    return BitrateGovernor(max_bps=kw.get("max_bps", 2_000_000), min_bps=300_000, clock=clock)


def test_a_low_estimate_lowers_at_once_within_bounds() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.update(1_000_000) == 850_000  # 85 % of the estimate for video
    clock.now += 1.0
    assert g.update(100_000) == 300_000  # never below min_bps
    assert g.update(50_000) is None  # already there


def test_drops_are_at_most_once_a_second() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.update(1_000_000) == 850_000
    clock.now += 0.5
    assert g.update(500_000) is None
    clock.now += 0.6
    assert g.update(500_000) == 425_000


def test_rises_wait_and_climb_in_steps() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.update(400_000) == 340_000
    clock.now += 2.0
    assert g.update(10_000_000) is None, "a rise waits raise_gap seconds"
    clock.now += 3.5
    assert g.update(10_000_000) == 510_000, "at most +50 % per step"
    clock.now += 5.1
    assert g.update(10_000_000) == 765_000
    clock.now += 5.1
    assert g.update(None) == 1_147_500, "no estimate: back towards the maximum"


def test_retry_after_says_when_a_held_back_change_is_due() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.retry_after() is None  # at the maximum, no estimate: nothing due
    assert g.update(400_000) == 340_000
    assert g.retry_after() is None  # where the estimate wants it
    clock.now += 2.0
    assert g.update(None) is None  # the slow viewer left: a rise, but not yet
    assert g.retry_after() == pytest.approx(3.0)
    clock.now += 3.0
    assert g.update(g.estimate) == 510_000
    assert g.retry_after() == pytest.approx(5.0)  # more steps to climb


def test_small_changes_are_ignored() -> None:
    clock = Clock()
    g = governor(clock)
    assert g.update(2_300_000) is None  # 1.955 M vs 2 M: under 10 %
    assert g.current == 2_000_000


def test_bounds_are_checked() -> None:
    with pytest.raises(ValueError):
        BitrateGovernor(max_bps=100_000, min_bps=200_000)


class RateSource:
    """A source that records the estimates the hub forwards."""

    def __init__(self) -> None:
        self.estimates: list[int | None] = []

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        pass

    async def stop(self) -> None:
        pass

    def request_keyframe(self) -> None:
        pass

    def set_bandwidth_estimate(self, bps: int | None) -> None:
        self.estimates.append(bps)


async def test_the_hub_forwards_the_lowest_estimate_of_current_consumers() -> None:
    src = RateSource()
    hub = MediaHub(src, kind="video", queue_frames=4, idle_stop=10)
    alice, bob = hub.subscribe("alice"), hub.subscribe("bob")
    hub.report_bandwidth(alice, 3_000_000)
    hub.report_bandwidth(bob, 800_000)
    hub.report_bandwidth(alice, 2_000_000)
    hub.report_bandwidth(alice, 2_000_000)  # unchanged: not forwarded again
    assert src.estimates == [3_000_000, 800_000, 800_000]
    bob.close()  # the slow viewer leaves: the next lowest rules
    assert src.estimates[-1] == 2_000_000
    alice.close()
    assert src.estimates[-1] is None
    await asyncio.wait_for(hub.close(), 5)
