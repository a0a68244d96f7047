"""The auto quality policy (device/quality.py) and the link pacer (device/pacing.py): pure logic."""

from __future__ import annotations

import asyncio

from peercam.pacing import LinkPacer
from peercam.quality import QualityPolicy, Stream


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def policy(clock: Clock, **kw: float) -> QualityPolicy:
    return QualityPolicy(clock=clock, probe_after=10, max_probe_after=40, settle=5, **kw)


def test_heavy_loss_twice_running_moves_down_once_does_not() -> None:
    clock = Clock()
    p = policy(clock)
    assert p.on_loss(0.5) is None
    assert p.on_loss(0.0) is None  # one bad report is noise
    assert p.on_loss(0.3) is None
    assert p.on_loss(0.3) is Stream.SUB


def test_a_falling_estimate_below_the_main_rate_moves_down_a_low_rising_one_does_not() -> None:
    clock = Clock()
    p = policy(clock)
    for bps in (300_000, 400_000, 500_000, 600_000):  # low, but ramping up: no congestion
        assert p.on_estimate(bps, main_rate=2_000_000) is None
    assert p.on_estimate(550_000, main_rate=2_000_000) is None
    assert p.on_estimate(500_000, main_rate=2_000_000) is Stream.SUB
    # falling, but still above what main sends: it fits
    q = policy(clock)
    for bps in (5_000_000, 4_000_000, 3_000_000):
        assert q.on_estimate(bps, main_rate=2_000_000) is None


def test_probing_back_up_waits_and_doubles_after_a_failed_probe() -> None:
    clock = Clock()
    p = policy(clock)
    p.moved(Stream.SUB)
    assert p.on_loss(0.0) is None and p.on_loss(0.0) is None  # too early
    clock.now += 10
    assert p.on_loss(0.0) is Stream.MAIN
    p.moved(Stream.MAIN)
    clock.now += 2  # the main stream did not hold
    p.on_loss(0.4)
    assert p.on_loss(0.4) is Stream.SUB
    p.moved(Stream.SUB)
    assert p.probe_after == 20
    clock.now += 15
    p.on_loss(0.0)
    assert p.on_loss(0.0) is None
    clock.now += 5
    assert p.on_loss(0.0) is Stream.MAIN
    # a lossy substream link is not probed at all
    clock.now += 100
    p.moved(Stream.MAIN)
    clock.now += 100
    p.moved(Stream.SUB)
    clock.now += 100
    assert p.on_loss(0.05) is None and p.on_loss(0.05) is None


def test_after_probing_up_the_estimate_is_ignored_while_it_settles() -> None:
    clock = Clock()
    p = policy(clock)
    p.moved(Stream.SUB)
    clock.now += 10
    p.moved(Stream.MAIN)
    for bps in (600_000, 500_000, 400_000):  # still the substream's estimate
        assert p.on_estimate(bps, main_rate=2_000_000) is None
    clock.now += 5
    p.on_estimate(380_000, main_rate=2_000_000)
    assert p.on_estimate(360_000, main_rate=2_000_000) is Stream.SUB


async def test_the_pacer_holds_media_to_its_rate_and_never_below_the_stream() -> None:
    clock = Clock()
    pacer = LinkPacer(clock=clock, min_burst=1_200, burst_seconds=0.0)
    sent: list[bytes] = []

    async def forward(data: bytes) -> None:
        sent.append(data)

    rtp = bytes([0x80, 96, 0, 1]) + bytes(1196)
    await pacer.send(rtp, forward)  # no estimate yet: not paced
    assert pacer.rate is None and len(sent) == 1
    pacer.on_estimate(100_000, stream_bps=400_000)
    assert pacer.rate == 500_000  # the stream's 400 kbit/s x 1.25, not the 150 kbit/s estimate
    pacer.on_estimate(600_000, stream_bps=400_000)
    assert pacer.rate == 1_500_000  # 2.5 x the estimate
    pacer.on_loss(0.5)
    assert pacer.rate == 1_125_000
    # a burst of 1200-byte packets must wait for the budget
    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.now += seconds
        await real_sleep(0)

    asyncio.sleep = fake_sleep  # type: ignore[assignment]
    try:
        for _ in range(10):
            await pacer.send(rtp, forward)
    finally:
        asyncio.sleep = real_sleep  # type: ignore[assignment]
    assert len(sent) == 11
    assert abs(sum(waits) - 9 * 1200 * 8 / 1_125_000) < 1e-6
    # RTCP is never held back
    rtcp = bytes([0x80, 200]) + bytes(26)
    await pacer.send(rtcp, forward)
    assert sent[-1] == rtcp


def test_retransmissions_only_for_recent_packets_and_not_from_before_a_switch() -> None:
    clock = Clock()
    pacer = LinkPacer(clock=clock)
    pacer._sent_at[7] = clock.now
    pacer._sent_at[8] = clock.now - 2.0
    assert pacer.may_retransmit(7)
    assert not pacer.may_retransmit(8), "too old for a live picture"
    assert not pacer.may_retransmit(9), "never sent (or forgotten)"
    pacer.forget_before_switch()
    assert not pacer.may_retransmit(7)
    assert (pacer.rtx_sent, pacer.rtx_skipped) == (1, 3)
