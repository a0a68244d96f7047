"""Server CPU with 0, 1, 2, 4, 8 viewers: peercam's passthrough vs per-viewer encoding.

    python -m bench.cpu_viewers [--servers peercam,baseline-x264-same,baseline-aiortc]
        [--sizes 1280x720,1920x1080] [--viewers 0,1,2,4,8] [--seconds 8] [--repeats 3]
        [--pattern noise] [--decode]

CPU is the server process's user+system seconds per wall second (1.0 = one
core), read from /proc over ``--repeats`` windows of ``--seconds`` while
every viewer keeps receiving.  Servers (``bench.harness.SERVERS``):

- ``peercam``: the daemon; the test-pattern camera is encoded once (libx264
  ultrafast in the daemon process, so it *is* counted) and every viewer gets
  the same access units;
- ``baseline-aiortc``: ``bench/baseline_server.py``, MediaRelay of raw
  pictures and aiortc's stock H.264 encoder per viewer;
- ``baseline-x264-same``: the same, with peercam's libx264 settings per viewer.

The viewers are real aiortc peer connections speaking PROTOCOL.md, in this
process (never in the measured one).  They do not decode unless ``--decode``
(see ``bench.nodecode``): 8 decoders would take the 2-core machine from
the server.  The camera runs with ``pattern = "noise"`` by default so the
stream really is the configured 2 Mbit/s (flat bars are ~0.5 Mbit/s and
would understate the per-viewer sending cost).

"CPU per extra viewer" is the least-squares slope of CPU over viewers from 1
viewer up, using only points where every viewer still got at least 90 % of
the frame rate (a saturated server cannot spend more CPU, it drops frames).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from typing import Any

from bench.harness import SERVERS, cpu_seconds, machine, rss_mib, run_bench, serve, write_result
from bench.nodecode import no_decoding
from tests.viewer import Viewer, WatchSession


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x (None with fewer than two distinct x)."""
    if len({x for x, _ in points}) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


async def connect_viewers(srv: Any, n: int, tag: str) -> tuple[list[Viewer], list[WatchSession]]:
    viewers = [Viewer(srv.broker_url, device=srv.device, viewer_id=f"{tag}{i}") for i in range(n)]
    await asyncio.gather(*(v.connect() for v in viewers))
    watches = list(await asyncio.gather(*(v.watch(timeout=30) for v in viewers)))
    return viewers, watches


async def close_viewers(viewers: list[Viewer]) -> None:
    await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)


async def measure_server(
    kind: str, size: tuple[int, int], counts: list[int], args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    fps = args.fps
    async with serve(kind, size=size, fps=fps, pattern=args.pattern, max_viewers=16) as srv:
        for n in counts:
            viewers, watches = await connect_viewers(srv, n, f"cpu{n}x")
            try:
                for w in watches:  # all flowing (a saturated server may be slow: don't fail)
                    with contextlib.suppress(AssertionError):
                        await w.wait_frames(10, timeout=20)
                await asyncio.sleep(args.settle)
                windows = []
                for _ in range(args.repeats):
                    frames0 = [w.frames for w in watches]
                    cpu0, t0 = cpu_seconds(srv.pid), time.monotonic()
                    await asyncio.sleep(args.seconds)
                    cpu1, t1 = cpu_seconds(srv.pid), time.monotonic()
                    wall = t1 - t0
                    windows.append(
                        {
                            "cpu": round((cpu1 - cpu0) / wall, 4),
                            "fps": [
                                round((w.frames - f) / wall, 2)
                                for w, f in zip(watches, frames0, strict=True)
                            ],
                        }
                    )
                cpus = [w["cpu"] for w in windows]
                all_fps = [f for w in windows for f in w["fps"]]
                row = {
                    "server": kind,
                    "size": f"{size[0]}x{size[1]}",
                    "viewers": n,
                    "cpu_median": round(statistics.median(cpus), 4),
                    "cpu_min": min(cpus),
                    "cpu_max": max(cpus),
                    "fps_min": min(all_fps) if all_fps else None,
                    "fps_median": round(statistics.median(all_fps), 2) if all_fps else None,
                    "rss_mib": round(rss_mib(srv.pid), 1),
                    "windows": windows,
                }
                rows.append(row)
                print(
                    f"  {kind:19s} {row['size']:9s} {n:2d} viewers: CPU {row['cpu_median']:.3f} "
                    f"({row['cpu_min']:.3f}-{row['cpu_max']:.3f}), fps min "
                    f"{row['fps_min'] if all_fps else '-'}",
                    flush=True,
                )
            finally:
                await close_viewers(viewers)
            await asyncio.sleep(1.0)
    return rows


def per_frame(rows: list[dict[str, Any]]) -> tuple[float | None, float | None]:
    """CPU per delivered viewer-frame: the fit ``cpu = fixed + per_frame * sum(viewer fps)``.

    Fitted over every window with at least one viewer.  Unlike the slope over
    viewers it stays meaningful when a starved server (or a starved machine:
    other people's tests) delivers fewer frames: fewer frames, less work.
    Returns (fixed cores, core-seconds per viewer-frame).
    """
    points = [(sum(w["fps"]), w["cpu"]) for r in rows if r["viewers"] >= 1 for w in r["windows"]]
    b = slope(points)
    if b is None:
        return None, None
    a = statistics.fmean(y for _, y in points) - b * statistics.fmean(x for x, _ in points)
    return a, b


def per_viewer(rows: list[dict[str, Any]], fps: int) -> dict[str, Any]:
    """Slope of CPU over viewers (unsaturated points, n >= 1), saturation, per-frame fit."""
    good = [
        (r["viewers"], r["cpu_median"])
        for r in rows
        if r["viewers"] >= 1 and r["fps_min"] is not None and r["fps_min"] >= 0.9 * fps
    ]
    saturated = [
        r["viewers"] for r in rows if r["viewers"] >= 1 and (r["fps_min"] or 0) < 0.9 * fps
    ]
    one = next((r["cpu_median"] for r in rows if r["viewers"] == 1), None)
    fixed, frame_cost = per_frame(rows)
    return {
        "cpu_per_viewer_frame_ms": None if frame_cost is None else round(frame_cost * 1000, 4),
        "cpu_per_extra_viewer_at_fps": None if frame_cost is None else round(frame_cost * fps, 4),
        "fixed_cpu_fit": None if fixed is None else round(fixed, 4),
        "cpu_per_extra_viewer": None if (s := slope(good)) is None else round(s, 4),
        "points_used": [n for n, _ in good],
        "saturated_at": min(saturated) if saturated else None,
        "cpu_one_viewer": one,
    }


def ratios(per: dict[str, dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """Baseline / peercam for both per-viewer measures, per picture size."""
    out: dict[str, dict[str, float | None]] = {}
    for key, pv in per.items():
        kind, label = key.split(" ")
        ours = per.get(f"peercam {label}")
        if kind == "peercam" or ours is None:
            continue
        entry: dict[str, float | None] = {}
        for measure in ("cpu_per_extra_viewer", "cpu_per_viewer_frame_ms"):
            a, b = pv.get(measure), ours.get(measure)
            entry[measure] = round(a / b, 1) if a and b and b > 0 else None
        out[key] = entry
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["server              | size      | viewers | CPU median (min-max) | fps min | RSS MiB"]
    for r in rows:
        fps = "-" if r["fps_min"] is None else f"{r['fps_min']:.1f}"
        lines.append(
            f"{r['server']:19s} | {r['size']:9s} | {r['viewers']:7d} | "
            f"{r['cpu_median']:6.3f} ({r['cpu_min']:.3f}-{r['cpu_max']:.3f}) | "
            f"{fps:>7s} | {r['rss_mib']:7.1f}"
        )
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = args.servers.split(",")
    for kind in servers:
        if kind not in SERVERS:
            raise SystemExit(f"unknown server {kind!r}; allowed: {', '.join(SERVERS)}")
    sizes = [tuple(int(x) for x in s.split("x")) for s in args.sizes.split(",")]
    counts = [int(x) for x in args.viewers.split(",")]
    rows: list[dict[str, Any]] = []
    with contextlib.nullcontext() if args.decode else no_decoding():
        for size in sizes:
            for kind in servers:
                rows += await measure_server(kind, size, counts, args)  # type: ignore[arg-type]
    slopes = {}
    for size in sizes:
        label = f"{size[0]}x{size[1]}"
        for kind in servers:
            mine = [r for r in rows if r["server"] == kind and r["size"] == label]
            slopes[f"{kind} {label}"] = per_viewer(mine, args.fps)
    return {"rows": rows, "per_viewer": slopes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--viewers", default="0,1,2,4,8")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--pattern", choices=("bars", "noise"), default="noise")
    parser.add_argument("--decode", action="store_true", help="viewers decode (more load)")
    parser.add_argument("--json", help="write here instead of bench/results/cpu_viewers.json")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    result = run_bench(run(args))
    print()
    print(table(result["rows"]))
    print()
    print("CPU per extra viewer (cores, slope over unsaturated points):")
    for key, pv in result["per_viewer"].items():
        slope_text = "n/a" if pv["cpu_per_extra_viewer"] is None else pv["cpu_per_extra_viewer"]
        sat = f", saturated from {pv['saturated_at']} viewers" if pv["saturated_at"] else ""
        print(f"  {key:32s} {slope_text} (points {pv['points_used']}{sat})")
    print("CPU per delivered viewer-frame (ms of CPU; fit over all windows):")
    for key, pv in result["per_viewer"].items():
        print(
            f"  {key:32s} {pv['cpu_per_viewer_frame_ms']} ms/frame = "
            f"{pv['cpu_per_extra_viewer_at_fps']} cores per viewer at {args.fps} fps"
        )
    result["ratios"] = ratios(result["per_viewer"])
    for key, ratio in result["ratios"].items():
        print(f"  ratio {key} / peercam: {ratio}")
    result["settings"] = {k: v for k, v in vars(args).items() if k not in ("json",)}
    path = write_result("cpu_viewers", result, args.json)
    print(f"written: {path}")
    if not args.no_plot:
        from bench.report import plot_cpu

        print(f"plot: {plot_cpu(result, path.with_suffix('.png'))}")


if __name__ == "__main__":
    main()
