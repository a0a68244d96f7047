"""The daemon's CPU with 0, 1, 2, 4 ... viewers watching the same camera.

    .venv/bin/python -m bench.cpu_viewers [--viewers 0,1,4] [--seconds 10] [--size 1280x720]

CPU is the daemon process's user+system seconds per wall second (1.0 = one
core), read from /proc over a window while every viewer keeps decoding.
The viewers run in this process, so their decoding is not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.harness import cpu_seconds, device, machine, rss_mib
from tests.viewer import Viewer


async def measure(counts: list[int], seconds: float, width: int, height: int) -> list[tuple]:
    rows = []
    async with device(
        {
            "camera": {"width": width, "height": height, "bitrate": 2_000_000, "idle_stop": 60.0},
            "webrtc": {"max_viewers": max(max(counts), 1)},
        }
    ) as daemon:
        for n in counts:
            viewers = [
                Viewer(daemon.broker_url, device=daemon.device, viewer_id=f"cpu{i}")
                for i in range(n)
            ]
            for v in viewers:
                await v.connect()
            watches = [await v.watch() for v in viewers]
            for w in watches:
                await w.wait_frames(30, timeout=20)
            frames_before = [w.frames for w in watches]
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            await asyncio.sleep(seconds)
            cpu1, t1 = cpu_seconds(daemon.pid), time.monotonic()
            fps = [(w.frames - f) / (t1 - t0) for w, f in zip(watches, frames_before, strict=True)]
            rows.append((n, (cpu1 - cpu0) / (t1 - t0), rss_mib(daemon.pid), fps))
            for v in viewers:
                await v.close()
            await asyncio.sleep(1.0)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--viewers", default="0,1,2,4")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    counts = [int(x) for x in args.viewers.split(",")]
    width, height = (int(x) for x in args.size.split("x"))
    rows = asyncio.run(measure(counts, args.seconds, width, height))
    print(f"machine: {machine()}")
    print(f"daemon CPU at {args.size}@30, test pattern, {args.seconds:.0f} s windows")
    print("viewers | CPU (cores) | RSS MiB | received fps per viewer")
    base = rows[0][1]
    for n, cpu, rss, fps in rows:
        fps_text = ", ".join(f"{f:.1f}" for f in fps) or "-"
        print(f"{n:7d} | {cpu:11.3f} | {rss:7.1f} | {fps_text}")
    by_n = {n: cpu for n, cpu, _, _ in rows}
    if 1 in by_n and 4 in by_n:
        print(f"CPU 4 viewers / 1 viewer: {by_n[4] / by_n[1]:.2f}x")
        print(f"CPU per extra viewer (1 -> 4): {(by_n[4] - by_n[1]) / 3:.3f} cores")
    if 0 in by_n:
        print(f"(0 viewers = camera off, idle daemon: {base:.3f} cores)")


if __name__ == "__main__":
    main()
