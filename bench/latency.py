"""Glass-to-glass latency: capture time stamped in the picture vs the viewer's clock.

    python -m bench.latency [--servers peercam,baseline-x264-same,baseline-aiortc] [--seconds 15]
        [--size 1280x720] [--no-slow] [--no-chromium]

The test pattern stamps its capture time (``time.time()`` in microseconds,
taken just before rendering and encoding) as a barcode into every picture
(``device/sources/timecode.py``).  Viewers on the same machine read it back
and subtract it from the same clock:

- Python viewers (``bench.g2g``): when aiortc hands over the decoded picture
  (includes aiortc's one-frame jitter-buffer hold, ~33 ms at 30 fps);
- Chromium (``bench/web/viewer.js``): in ``requestVideoFrameCallback``, the
  band is drawn to a canvas and decoded in JS; latency is measured to the
  frame's ``expectedDisplayTime`` (when it reaches the screen); ``network``
  is capture to the last packet's ``receiveTime``.

Scenarios, each with ``--seconds`` of samples after 2 s of settling:

- ``1``: one viewer; ``4``: four viewers at once;
- ``4+slow``: four viewers plus a fifth in a network namespace whose link
  is shaped with ``tc tbf`` to 1 Mbit/s (half the stream) with at most
  200 ms of queue: it loses packets, sends NACKs and PLIs, and so asks for
  IDRs that every viewer gets.  What matters is the other four.

Each scenario runs twice: all Python viewers, then Chromium as the first
viewer with Python viewers for the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from typing import Any

from bench.g2g import LatencyMeter
from bench.harness import machine, run_bench, serve, stats, write_result
from bench.netns import Namespace, available, throttled_namespace
from tests.viewer import Viewer


async def python_viewers(srv: Any, n: int, tag: str, meter: LatencyMeter) -> list[Viewer]:
    viewers = [Viewer(srv.broker_url, device=srv.device, viewer_id=f"{tag}{i}") for i in range(n)]
    for v in viewers:
        v.frame_hook = meter
    await asyncio.gather(*(v.connect() for v in viewers))
    watches = await asyncio.gather(*(v.watch(timeout=30) for v in viewers))
    await asyncio.gather(*(w.wait_frames(5, timeout=30) for w in watches))
    return viewers


async def start_slow(srv: Any, ns: Namespace, seconds: float) -> asyncio.subprocess.Process:
    port = srv.extra["broker_port_for_namespaces"]
    argv = [
        sys.executable,
        "-m",
        "bench.slow_viewer",
        "--broker",
        f"mqtt://{ns.host_ip}:{port}",
        "--device",
        srv.device,
        "--network",
        ns.network,
        "--seconds",
        str(seconds),
    ]
    proc = await asyncio.create_subprocess_exec(
        *ns.command(argv), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    assert proc.stdout is not None
    async with asyncio.timeout(40):
        line = await proc.stdout.readline()
    if b"watching" not in line:
        raise RuntimeError(f"slow viewer did not start: {line!r}")
    return proc


async def finish_slow(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        out = await proc.stdout.read()
        await proc.wait()
    lines = [x for x in out.decode().splitlines() if x.strip()]
    return json.loads(lines[-1]) if lines else {"event": "failed", "error": "no output"}


async def scenario(
    srv: Any, n: int, chromium: bool, slow: Namespace | None, seconds: float
) -> dict[str, Any]:
    meter = LatencyMeter()
    viewers: list[Viewer] = []
    slow_proc = None
    result: dict[str, Any] = {}
    async with contextlib.AsyncExitStack() as stack:
        chromium_viewer = None
        if chromium:
            from bench.chromium import chromium_viewers

            (chromium_viewer,) = await stack.enter_async_context(
                chromium_viewers(srv.ws_url, srv.device, ["g2g-chromium"], trickle=True)
            )
            await chromium_viewer.watch()
        try:
            viewers = await python_viewers(srv, n - int(chromium), "g2g", meter)
            if slow is not None:
                slow_proc = await start_slow(srv, slow, seconds + 2)
            await asyncio.sleep(2.0)
            meter.take()
            meter.keyframes.clear()
            if chromium_viewer is not None:
                await chromium_viewer.take_latency()
            await asyncio.sleep(seconds)
            per_session = meter.take()
            python = [x for v in per_session.values() for x in v]
            result["python_g2g_ms"] = stats(python)
            result["python_per_viewer_median_ms"] = [
                stats(v)["median"] for v in per_session.values()
            ]
            result["python_unreadable"] = meter.unreadable
            counted = len(viewers)  # Python viewers decode and flag key frames
            result["keyframes_per_viewer_per_s"] = (
                round(sum(meter.keyframes.values()) / counted / seconds, 2) if counted else None
            )
            if chromium_viewer is not None:
                data = await chromium_viewer.take_latency()
                result["chromium_g2g_ms"] = stats([s["g2g"] for s in data["samples"]])
                result["chromium_network_ms"] = stats(
                    [s["network"] for s in data["samples"] if "network" in s]
                )
                result["chromium_unreadable"] = data["unreadable"]
                result["chromium_fps"] = round(data["frames"] / seconds, 1)
            if slow_proc is not None:
                result["slow_viewer"] = await finish_slow(slow_proc)
                slow_proc = None
        finally:
            if slow_proc is not None and slow_proc.returncode is None:
                slow_proc.kill()
                await slow_proc.wait()
            await asyncio.gather(*(v.close() for v in viewers), return_exceptions=True)
            if chromium_viewer is not None:
                with contextlib.suppress(Exception):
                    await chromium_viewer.bye()
    await asyncio.sleep(1.0)
    return result


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    width, height = (int(x) for x in args.size.split("x"))
    rows: list[dict[str, Any]] = []
    slow_ok = not args.no_slow and available() is None
    if not args.no_slow and not slow_ok:
        print(f"slow-viewer case skipped: {available()}")
    async with contextlib.AsyncExitStack() as stack:
        ns = stack.enter_context(throttled_namespace()) if slow_ok else None
        for kind in args.servers.split(","):
            listen = [ns.host_ip] if ns else []
            nets = ["127.0.0.1/32", *([ns.network] if ns else [])]
            async with serve(
                kind,
                size=(width, height),
                pattern=args.pattern,
                host_networks=nets,
                broker_listen=listen,
                broker_nodelay=args.broker_nodelay,
            ) as srv:
                cases = [(1, None), (4, None)] + ([(4, ns)] if ns else [])
                wanted = args.scenarios.split(",")
                cases = [c for c in cases if f"{c[0]}{'+slow' if c[1] else ''}" in wanted]
                for n, slow in cases:
                    for chromium in (False, True) if not args.no_chromium else (False,):
                        label = f"{n}{'+slow' if slow else ''}"
                        result = await scenario(srv, n, chromium, slow, args.seconds)
                        row = {
                            "server": kind,
                            "viewers": label,
                            "with_chromium": chromium,
                            "shaping": slow.shaping if slow else None,
                            **result,
                        }
                        rows.append(row)
                        print(f"{kind}, {label} viewers{', Chromium first' if chromium else ''}:")
                        print(f"  python g2g ms: {fmt(result['python_g2g_ms'])}", flush=True)
                        if "chromium_g2g_ms" in result:
                            print(f"  chromium g2g ms: {fmt(result['chromium_g2g_ms'])}")
                            print(
                                f"  chromium capture->received ms: "
                                f"{fmt(result['chromium_network_ms'])}"
                            )
                        if "slow_viewer" in result:
                            print(f"  slow viewer: {result['slow_viewer']}")
                        print(f"  IDR/s per viewer: {result['keyframes_per_viewer_per_s']}")
    return rows


def fmt(s: dict[str, Any]) -> str:
    if not s.get("n"):
        return "no samples"
    return (
        f"median {s['median']:.1f}, p95 {s['p95']:.1f}, "
        f"min {s['min']:.1f}, max {s['max']:.1f} (n={s['n']})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="peercam,baseline-x264-same,baseline-aiortc")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--pattern", choices=("bars", "noise"), default="noise")
    parser.add_argument("--no-slow", action="store_true", help="skip the throttled viewer")
    parser.add_argument("--scenarios", default="1,4,4+slow", help="any of 1, 4, 4+slow")
    parser.add_argument("--no-chromium", action="store_true")
    parser.add_argument("--broker-nodelay", action="store_true")
    parser.add_argument("--json", help="write here instead of bench/results/latency.json")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    rows = run_bench(run(args))
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    print(f"written: {write_result('latency', {'settings': settings, 'rows': rows}, args.json)}")


if __name__ == "__main__":
    main()
