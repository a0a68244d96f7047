"""Fan-out rules: IDR on join, bounded queues, skip-to-IDR, source lifecycle."""

from __future__ import annotations

import asyncio

import pytest

from peercam.hub import MediaHub, SourceState, SubscriptionClosed
from peercam.media import EncodedFrame, FaultSink, FrameSink
from tests.waiting import wait_until


class ScriptedSource:
    """Records what the hub asks; the test pushes frames by hand."""

    def __init__(self, fail_starts: int = 0) -> None:
        self.sink: FrameSink | None = None
        self.fault: FaultSink | None = None
        self.starts = 0
        self.stops = 0
        self.keyframe_requests = 0
        self.fail_starts = fail_starts
        self.pts = 0

    async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
        self.starts += 1
        if self.starts <= self.fail_starts:
            raise RuntimeError("no camera detected")
        self.sink, self.fault = sink, on_fault

    async def stop(self) -> None:
        self.stops += 1
        self.sink = None

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1

    def push(self, keyframe: bool = False) -> EncodedFrame:
        assert self.sink is not None, "source not started"
        self.pts += 33_333
        frame = EncodedFrame(b"IDR" if keyframe else b"P", self.pts, keyframe)
        self.sink(frame)
        return frame


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_source_runs_only_while_someone_watches() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=4, idle_stop=0.05)
    assert src.starts == 0
    sub = hub.subscribe("a")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    src.push(keyframe=True)
    assert hub.state is SourceState.STREAMING
    sub.close()
    await wait_until(lambda: src.stops == 1, "src.stops == 1", 5.0)
    assert hub.state is SourceState.IDLE
    await hub.close()


async def test_new_consumer_starts_on_an_idr_requested_when_it_first_reads() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=8, idle_stop=1)
    first = hub.subscribe("first")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    reader = asyncio.create_task(first.get())
    await settle()
    src.push(keyframe=True)
    await reader
    src.push()
    late = hub.subscribe("late")
    assert src.keyframe_requests == 0, "subscribing alone asks for nothing"
    late_reader = asyncio.create_task(late.get())
    await settle()
    assert src.keyframe_requests == 1, "its first read asks for its IDR"
    src.push()  # a P frame: useless to a newcomer
    idr = src.push(keyframe=True)
    assert await late_reader == idr
    assert first.queued == 3
    await hub.close()


async def test_a_consumer_that_asks_for_itself_gets_no_idr_at_its_join() -> None:
    """The SFU publisher: Janus sends a PLI as each subscriber joins; an IDR at the
    publisher's own join would reach nobody and spend the back-off that PLI needs."""
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=8, idle_stop=1)
    first = hub.subscribe("first")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    reader = asyncio.create_task(first.get())
    await settle()
    src.push(keyframe=True)
    await reader
    sfu = hub.subscribe("sfu", ask_on_join=False)
    sfu_reader = asyncio.create_task(sfu.get())
    await settle()
    assert src.keyframe_requests == 0, "no IDR at the join"
    assert sfu.request_keyframe("PLI from the SFU's first subscriber")
    assert src.keyframe_requests == 1, "its own first request is honoured at once"
    src.push()  # a P frame: skipped until the IDR
    idr = src.push(keyframe=True)
    assert await sfu_reader == idr
    await hub.close()


async def test_a_consumer_that_never_reads_takes_nothing_and_asks_for_nothing() -> None:
    """A session still in ICE checking: its sender has not started reading."""
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1)
    hub.subscribe("connecting")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    watcher = hub.subscribe("watching")
    watcher.activate()
    for i in range(300):
        src.push(keyframe=i % 60 == 0)
        assert await watcher.get()
    assert src.keyframe_requests == 0
    assert hub.keyframes_in == 5  # the stream's own
    await hub.close()


async def test_a_consumer_that_stops_reading_asks_for_nothing_until_it_reads_again() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1)
    stuck = hub.subscribe("stuck")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    stuck.activate()
    src.push(keyframe=True)
    assert await stuck.get()
    requests = src.keyframe_requests
    for i in range(1, 300):
        src.push(keyframe=i % 60 == 0)
    assert stuck.dropped > 0 and stuck.queued <= 3
    assert src.keyframe_requests == requests, "a consumer that reads nothing asks nothing"
    # It reads again: whatever it had queued, then one IDR request when it runs dry.
    while stuck.queued:
        await stuck.get()
    src.push()  # overflows nothing; the next read would wait for an IDR
    await stuck.get() if stuck.queued else None
    for _ in range(5):
        src.push()
    reader = asyncio.create_task(stuck.get())
    await settle()
    assert src.keyframe_requests <= requests + 1
    src.push(keyframe=True)
    assert (await reader).keyframe
    await hub.close()


async def test_falling_behind_again_and_again_goes_through_the_back_off() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1)
    slow = hub.subscribe("slow")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    slow.activate()
    src.push(keyframe=True)
    passed_before = slow.keyframe_requests
    for _ in range(20):  # read one, then fall behind, then read: at once, many times
        src.push(keyframe=True)
        await slow.get()
        for _ in range(5):
            src.push()
        src.push()
        await slow.get() if slow.queued else None
        reader = asyncio.create_task(slow.get())
        await settle()
        src.push(keyframe=True)
        await reader
    # All within far less than the limiter's first gap: at most one got through.
    assert slow.keyframe_requests - passed_before <= 1
    assert slow.keyframe_requests_held >= 1
    await hub.close()


async def test_keyframe_requests_are_coalesced() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=8, idle_stop=1)
    hub.subscribe()
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    src.push(keyframe=True)
    for _ in range(10):
        hub.request_keyframe("test")
    assert src.keyframe_requests == 1
    src.push(keyframe=True)  # the IDR arrives: a new request goes through
    hub.request_keyframe("again")
    assert src.keyframe_requests == 2
    await hub.close()


async def test_slow_consumer_skips_to_next_idr_without_growing() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1)
    slow = hub.subscribe("slow")
    fast = hub.subscribe("fast")
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    slow.activate()
    fast.activate()
    src.push(keyframe=True)
    got_fast = [await fast.get()]
    for _ in range(10):
        src.push()
        got_fast.append(await fast.get())
        assert slow.queued <= 3
    assert slow.dropped >= 3
    assert slow.waiting_for_keyframe
    assert len(got_fast) == 11  # the fast one lost nothing
    idr = src.push(keyframe=True)
    assert await slow.get() == idr
    await hub.close()


async def test_closed_subscription_ends_a_waiting_reader() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1)
    sub = hub.subscribe()
    reader = asyncio.create_task(sub.get())
    await settle()
    sub.close()
    with pytest.raises(SubscriptionClosed):
        await reader
    await hub.close()


async def test_start_failure_is_a_fault_and_retried() -> None:
    src = ScriptedSource(fail_starts=1)
    changes: list[str] = []
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1, max_backoff=0.05)
    hub._on_state_change = lambda: changes.append(f"{hub.state}:{hub.fault}")
    hub.subscribe()
    await wait_until(lambda: hub.state is SourceState.FAULT, "hub.state is SourceState.FAULT", 5.0)
    assert hub.fault == "no camera detected"
    # Second attempt after the (1 s) first backoff succeeds.
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5)
    src.push(keyframe=True)
    assert hub.state is SourceState.STREAMING and hub.fault is None
    assert any(c.startswith("fault") for c in changes)
    await hub.close()


async def test_a_start_that_hangs_is_a_fault_and_retried() -> None:
    class HangingOnce(ScriptedSource):
        async def start(self, sink: FrameSink, on_fault: FaultSink) -> None:
            if self.starts == 0:
                self.starts += 1
                await asyncio.sleep(3600)  # a wedged driver
            await super().start(sink, on_fault)

    src = HangingOnce()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1, start_timeout=0.1)
    hub.subscribe()
    await wait_until(lambda: hub.state is SourceState.FAULT, "hub.state is SourceState.FAULT", 5.0)
    assert hub.fault == "did not start within 0.1 s (driver hung?)"
    assert src.stops == 1  # the half-started source is told to stop
    await wait_until(
        lambda: src.sink is not None, "src.sink is not None", 5
    )  # retried after the backoff
    src.push(keyframe=True)
    assert hub.state is SourceState.STREAMING and hub.fault is None
    await hub.close()


async def test_stalled_source_is_restarted() -> None:
    src = ScriptedSource()
    hub = MediaHub(src, kind="video", queue_frames=3, idle_stop=1, stall_timeout=0.2)
    hub.subscribe()
    await wait_until(lambda: src.sink is not None, "src.sink is not None", 5.0)
    src.push(keyframe=True)
    # No more frames: the watchdog stops and restarts the source.
    await wait_until(lambda: src.starts >= 2, "src.starts >= 2", 5)
    assert src.stops >= 1
    await hub.close()
