"""Server memory: RSS with 0, 1, 4, 8 viewers, and its growth over a short soak.

    python -m bench.memory [--servers peercam,baseline-x264-same] [--viewers 0,1,4,8]
        [--soak-minutes 10] [--churn-seconds 5]

RSS is ``VmRSS`` of the server process (``/proc``), read after the viewers
have been receiving for ``--settle`` seconds.  Viewers are real aiortc peer
connections in this process that do not decode (``bench.nodecode``).

The soak (peercam only) keeps 4 viewers watching and one more that joins
and leaves every ``--churn-seconds`` (so leaked sessions, tasks or queues
would show), samples RSS every 10 s, and reports growth per hour as the
least-squares slope over the samples after the first minute (allocator
warm-up) and over the second half of the soak.  This is a short soak: issue 8 has the long one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from typing import Any

from bench.cpu_viewers import close_viewers, connect_viewers, slope
from bench.harness import machine, rss_mib, run_bench, serve, write_result
from bench.nodecode import no_decoding
from tests.viewer import Viewer


async def rss_by_viewers(kind: str, counts: list[int], args: argparse.Namespace) -> list[dict]:
    rows = []
    width, height = (int(x) for x in args.size.split("x"))
    async with serve(kind, size=(width, height), pattern=args.pattern) as srv:
        for n in counts:
            viewers, watches = await connect_viewers(srv, n, f"mem{n}x")
            try:
                for w in watches:
                    with contextlib.suppress(AssertionError):
                        await w.wait_frames(10, timeout=20)
                await asyncio.sleep(args.settle)
                row = {"server": kind, "viewers": n, "rss_mib": round(rss_mib(srv.pid), 1)}
                rows.append(row)
                print(f"  {kind:19s} {n} viewers: RSS {row['rss_mib']} MiB", flush=True)
            finally:
                await close_viewers(viewers)
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
        rows.append({"server": kind, "viewers": "after", "rss_mib": round(rss_mib(srv.pid), 1)})
    return rows


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    width, height = (int(x) for x in args.size.split("x"))
    samples: list[tuple[float, float]] = []
    churned = 0
    async with serve("peercam", size=(width, height), pattern=args.pattern) as srv:
        viewers, watches = await connect_viewers(srv, 4, "soak")
        churner = Viewer(srv.broker_url, device=srv.device, viewer_id="soak-churn")
        await churner.connect()
        try:
            t0 = time.monotonic()
            end = t0 + args.soak_minutes * 60
            next_sample = t0
            while time.monotonic() < end:
                watch = await churner.watch(timeout=30)
                with contextlib.suppress(AssertionError):
                    await watch.wait_frames(1, timeout=10)
                await asyncio.sleep(args.churn_seconds)
                await watch.bye()
                churned += 1
                if time.monotonic() >= next_sample:
                    samples.append((time.monotonic() - t0, rss_mib(srv.pid)))
                    next_sample += 10
            frames = [w.frames for w in watches]
        finally:
            await churner.close()
            await close_viewers(viewers)
    late = [(t, r) for t, r in samples if t >= 60]
    growth = slope(late)
    half = slope(samples[len(samples) // 2 :])
    return {
        "minutes": args.soak_minutes,
        "steady_viewers": 4,
        "churned_sessions": churned,
        "frames_per_steady_viewer": frames,
        "rss_first_mib": round(samples[0][1], 1) if samples else None,
        "rss_last_mib": round(samples[-1][1], 1) if samples else None,
        "growth_mib_per_hour": None if growth is None else round(growth * 3600, 2),
        "growth_second_half_mib_per_hour": None if half is None else round(half * 3600, 2),
        "samples": [(round(t, 1), round(r, 2)) for t, r in samples],
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.viewers.split(",")]
    rows: list[dict] = []
    with no_decoding():
        for kind in args.servers.split(","):
            rows += await rss_by_viewers(kind, counts, args)
        result: dict[str, Any] = {"rows": rows}
        if args.soak_minutes > 0:
            result["soak"] = await soak(args)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="peercam,baseline-x264-same")
    parser.add_argument("--viewers", default="0,1,4,8")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--pattern", choices=("bars", "noise"), default="noise")
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--soak-minutes", type=float, default=10.0)
    parser.add_argument("--churn-seconds", type=float, default=5.0)
    parser.add_argument("--json", help="write here instead of bench/results/memory.json")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    result = run_bench(run(args))
    print("server              | viewers | RSS MiB")
    for r in result["rows"]:
        print(f"{r['server']:19s} | {r['viewers']!s:7s} | {r['rss_mib']:7.1f}")
    if "soak" in result:
        s = result["soak"]
        print(
            f"soak {s['minutes']} min, 4 viewers + {s['churned_sessions']} churned sessions: "
            f"RSS {s['rss_first_mib']} -> {s['rss_last_mib']} MiB, "
            f"growth {s['growth_mib_per_hour']} MiB/h after the first minute, "
            f"{s['growth_second_half_mib_per_hour']} MiB/h over the second half"
        )
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    print(f"written: {write_result('memory', {'settings': settings, **result}, args.json)}")


if __name__ == "__main__":
    main()
