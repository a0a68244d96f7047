"""Soak: viewers join, watch and leave for N minutes; the daemon's resources must stay flat.

    .venv/bin/python -m bench.soak [--minutes 10] [--max-viewers 3] [--size 320x240]

Real Mosquitto, the real daemon (test pattern), Python aiortc viewers on
127.0.0.1.  Waves of 1 to ``max_viewers + 1`` viewers (one more than fit, so
``busy`` is exercised) join at once, watch a few seconds and leave by bye,
by MQTT last will, or by just closing the peer connection; now and then a
viewer sends garbage first.  Every minute the daemon's own resource report
(``[diagnostics] resources_every``) is printed: RSS, open fds, asyncio
tasks, threads, live peer connections.  At the end the daemon is left idle,
and start and end are compared; the RSS trend is a least-squares slope over
the minutes after the first (warm-up).  Figures only: nothing is asserted
here (``tests/test_soak_short.py`` checks that counts return to baseline).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from bench.harness import device, machine
from peercam.resources import ResourceReport
from tests.daemon_proc import DaemonProcess
from tests.daemon_resources import idle_baseline, next_report, reports
from tests.viewer import SignalingError, Viewer

GARBAGE = [b"{nope", b'{"v":1,"type":"teleport"}', b'{"v":1,"type":"hello","session":"x"}']


@dataclass
class Workload:
    """Waves of viewers against one daemon; ``outcomes`` counts what happened to each."""

    daemon: DaemonProcess
    max_viewers: int
    rng: random.Random = field(default_factory=lambda: random.Random(8))
    outcomes: Counter[str] = field(default_factory=Counter)
    serial: int = 0

    async def viewer(self, watch_seconds: float) -> None:
        self.serial += 1
        viewer = Viewer(
            self.daemon.broker_url, device=self.daemon.device, viewer_id=f"soak{self.serial}"
        )
        await viewer.connect()
        try:
            if self.rng.random() < 0.2:
                await viewer.send_raw(self.rng.choice(GARBAGE))
                await viewer.next_message("error", timeout=15)
                self.outcomes["garbage refused"] += 1
            try:
                watch = await viewer.watch(timeout=15)
            except SignalingError as exc:
                self.outcomes[f"refused {exc.code}"] += 1
                return
            await watch.wait_frames(5, timeout=15)
            await asyncio.sleep(watch_seconds)
            self.outcomes["watched"] += 1
            how = self.rng.choice(["bye", "will", "quiet"])
            self.outcomes[f"left by {how}"] += 1
            if how == "bye":
                await watch.bye()
            elif how == "will":
                await viewer.drop()
                await watch.close()
            else:
                await watch.close()
        finally:
            await viewer.close(bye=False)

    async def wave(self, watch_seconds: tuple[float, float] = (1.0, 5.0)) -> None:
        """One wave: 1 to max_viewers + 1 viewers at once."""
        n = self.rng.randint(1, self.max_viewers + 1)
        await asyncio.gather(*(self.viewer(self.rng.uniform(*watch_seconds)) for _ in range(n)))


def trend(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def row(minute: float, r: ResourceReport, outcomes: Counter[str]) -> str:
    return (
        f"{minute:6.1f} | {r.rss_kib / 1024:7.1f} | {r.fds:3d} | {r.tasks:5d} | {r.threads:7d} | "
        f"{r.peer_connections:3d} | {r.sessions:8d} | {outcomes['watched']:7d}"
    )


async def soak(minutes: float, max_viewers: int, width: int, height: int, every: float) -> None:
    overrides = {
        "camera": {"width": width, "height": height, "idle_stop": 0.5},
        "webrtc": {"max_viewers": max_viewers},
        "diagnostics": {"resources_every": 2.0},
    }
    async with device(overrides) as daemon:
        work = Workload(daemon, max_viewers)
        await work.wave()  # warm-up: lazy imports, first camera start
        start = await idle_baseline(daemon)
        print(f"machine: {machine()}")
        print(f"soak: {minutes:g} min, max_viewers {max_viewers}, {width}x{height}@30")
        print("   min | RSS MiB | fds | tasks | threads | pcs | sessions | watched")
        print(row(0.0, start, work.outcomes), flush=True)
        t0 = time.monotonic()
        deadline = t0 + minutes * 60
        next_print = t0 + every
        rss_points: list[tuple[float, float]] = []
        while time.monotonic() < deadline:
            await work.wave()
            if time.monotonic() >= next_print:
                latest = reports(daemon)[-1]
                minute = (time.monotonic() - t0) / 60
                print(row(minute, latest, work.outcomes), flush=True)
                rss_points.append((minute, latest.rss_kib / 1024))
                next_print += every
        end = await idle_baseline(daemon, timeout=60)
        minute = (time.monotonic() - t0) / 60
        print(row(minute, end, work.outcomes))
        print()
        print(f"outcomes: {dict(sorted(work.outcomes.items()))}")
        print(
            f"start (idle): RSS {start.rss_kib / 1024:.1f} MiB, {start.fds} fds, "
            f"{start.tasks} tasks, {start.threads} threads, {start.peer_connections} pcs"
        )
        print(
            f"end (idle):   RSS {end.rss_kib / 1024:.1f} MiB, {end.fds} fds, "
            f"{end.tasks} tasks, {end.threads} threads, {end.peer_connections} pcs"
        )
        steady = [p for p in rss_points if p[0] >= 1.0]
        print(f"RSS trend after the first minute: {trend(steady) * 1024:+.0f} KiB/min")
        with contextlib.suppress(AssertionError):
            await next_report(daemon, timeout=5)
        if "Traceback" in daemon.log_text():
            print("WARNING: the daemon logged a Traceback (see its log)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-viewers", type=int, default=3)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between rows")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    asyncio.run(soak(args.minutes, args.max_viewers, width, height, args.every))


if __name__ == "__main__":
    main()
