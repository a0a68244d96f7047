"""Time to first frame: ``hello`` (and ``offer``) to the first decoded / displayed frame.

    python -m bench.first_frame [--runs 20] [--size 1280x720] [--viewers python,chromium]
        [--servers peercam,baseline-aiortc] [--cold]

Real Mosquitto, the real server, all on 127.0.0.1. Each run is a fresh
session from a viewer that stays connected to the broker (as a dashboard
tab does), after a random 0.2-0.8 s pause so runs land at random points of
the 2 s IDR period.  The camera is kept running between runs (``idle_stop``
60 s) after one uncounted warm-up run; ``--cold`` stops it between runs.

- Python viewer (``tests/viewer.py``): first frame = first picture aiortc
  decoded.  The offer is made after the welcome, so hello→frame includes
  ICE gathering (loopback only: quick).
- Chromium (``bench/web/viewer.js``): first frame = the first
  ``requestVideoFrameCallback``, i.e. a picture handed to the compositor;
  the offer is sent once ICE gathering completed (as the dashboard does);
  ``chromium-trickle`` sends it at once and trickles its candidates.

For peercam both with IDR-on-join (the default) and without it (the daemon
started with ``PEERCAM_BENCH_NO_IDR_ON_JOIN=1``, a benchmark-only switch):
then a new viewer waits for the next periodic IDR, or for the IDR its own
PLI asks for.  The baseline servers encode per viewer, so a viewer's first
picture is an IDR anyway.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from typing import Any

from bench.harness import machine, run_bench, serve, stats, summary, write_result
from tests.viewer import Viewer


async def python_runs(srv: Any, runs: int, cold: bool) -> dict[str, list[float]]:
    hello_ms: list[float] = []
    offer_ms: list[float] = []
    welcome_ms: list[float] = []
    answer_ms: list[float] = []
    async with Viewer(srv.broker_url, device=srv.device, viewer_id="ttff-py") as viewer:
        for i in range(runs + 1):
            watch = await viewer.watch()
            await watch.wait_frames(1, timeout=15)
            assert watch.time_to_first_frame is not None
            assert watch.offer_to_first_frame is not None
            if i > 0:  # run 0 warms the camera up
                hello_ms.append(watch.time_to_first_frame * 1000)
                offer_ms.append(watch.offer_to_first_frame * 1000)
                assert watch.offer_sent_at and watch.hello_sent_at and watch.answer_at
                welcome_ms.append((watch.offer_sent_at - watch.hello_sent_at) * 1000)
                answer_ms.append((watch.answer_at - watch.offer_sent_at) * 1000)
            await watch.bye()
            if cold:
                await viewer.wait_status(lambda s: s.get("camera") == "idle", timeout=15)
            await asyncio.sleep(random.uniform(0.2, 0.8))
    return {
        "hello_ms": hello_ms,
        "offer_ms": offer_ms,
        "hello_to_offer_ms": welcome_ms,
        "offer_to_answer_ms": answer_ms,
    }


async def chromium_runs(
    srv: Any, runs: int, cold: bool, trickle: bool = False
) -> dict[str, list[float]]:
    from bench.chromium import chromium_viewers

    keys = ("helloMs", "offerMs", "gatherMs", "welcomeMs", "answerMs")
    data: dict[str, list[float]] = {k: [] for k in keys}
    async with chromium_viewers(srv.ws_url, srv.device, ["ttff-chromium"], trickle=trickle) as (
        viewer,
    ):
        status = Viewer(srv.broker_url, device=srv.device, viewer_id="ttff-status")
        await status.connect()
        try:
            for i in range(runs + 1):
                result = await viewer.watch()
                if i > 0:
                    for key in keys:
                        data[key].append(result[key])
                await viewer.bye()
                if cold:
                    await status.wait_status(lambda s: s.get("camera") == "idle", timeout=15)
                await asyncio.sleep(random.uniform(0.2, 0.8))
        finally:
            await status.close()
        if viewer.console_errors:
            print(f"  chromium console errors: {viewer.console_errors[:3]}")
    return {
        "hello_ms": data["helloMs"],
        "offer_ms": data["offerMs"],
        "gather_ms": data["gatherMs"],
        "hello_to_welcome_ms": data["welcomeMs"],
        "offer_to_answer_ms": data["answerMs"],
    }


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    width, height = (int(x) for x in args.size.split("x"))
    cases: list[tuple[str, bool]] = []
    for kind in args.servers.split(","):
        cases.append((kind, True))
        if kind == "peercam" and not args.only_idr_on_join:
            cases.append((kind, False))
    rows: list[dict[str, Any]] = []
    for kind, idr in cases:
        async with serve(
            kind,
            size=(width, height),
            pattern=args.pattern,
            idr_on_join=idr,
            idle_stop=0.0 if args.cold else 60.0,
            broker_nodelay=args.broker_nodelay,
        ) as srv:
            for viewer in args.viewers.split(","):
                if viewer == "python":
                    data = await python_runs(srv, args.runs, args.cold)
                else:
                    trickle = viewer == "chromium-trickle"
                    data = await chromium_runs(srv, args.runs, args.cold, trickle)
                row = {
                    "server": kind,
                    "idr_on_join": idr,
                    "viewer": viewer,
                    **{f"{k}_stats": stats(v) for k, v in data.items()},
                    **data,
                }
                rows.append(row)
                label = f"{kind}, IDR on join {'on' if idr else 'off'}, {viewer}"
                print(f"{label}:", flush=True)
                print(f"  hello -> first frame: {summary(data['hello_ms'])}", flush=True)
                print(f"  offer -> first frame: {summary(data['offer_ms'])}", flush=True)
                for key in data:
                    if key not in ("hello_ms", "offer_ms"):
                        print(f"    {key}: {summary(data[key])}", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--servers", default="peercam,baseline-aiortc")
    parser.add_argument(
        "--viewers", default="python,chromium,chromium-trickle", help="python, chromium[-trickle]"
    )
    parser.add_argument("--pattern", choices=("bars", "noise"), default="noise")
    parser.add_argument("--cold", action="store_true", help="camera stopped between runs")
    parser.add_argument("--only-idr-on-join", action="store_true")
    parser.add_argument(
        "--broker-nodelay", action="store_true", help="Mosquitto set_tcp_nodelay true"
    )
    parser.add_argument("--json", help="write here instead of bench/results/first_frame.json")
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    rows = run_bench(run(args))
    settings = {k: v for k, v in vars(args).items() if k != "json"}
    print(
        f"written: {write_result('first_frame', {'settings': settings, 'rows': rows}, args.json)}"
    )


if __name__ == "__main__":
    main()
