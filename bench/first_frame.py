"""Time from a viewer's ``offer`` (and ``hello``) to its first decoded frame.

    .venv/bin/python -m bench.first_frame [--runs 20] [--size 1280x720]

Real Mosquitto, the real daemon (test pattern), a Python aiortc viewer, all
on 127.0.0.1. Each run is a fresh session; the camera is kept warm by a
first viewer (``--cold`` measures with the camera off between runs, which
adds the encoder's start-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json

from bench.harness import device, machine, summary
from tests.viewer import Viewer


async def measure(runs: int, width: int, height: int, cold: bool) -> dict[str, object]:
    camera = {"width": width, "height": height, "idle_stop": 0.0 if cold else 30.0}
    async with device({"camera": camera}) as daemon:
        offer_ms: list[float] = []
        hello_ms: list[float] = []
        async with Viewer(daemon.broker_url, device=daemon.device, viewer_id="bench") as viewer:
            for _ in range(runs):
                watch = await viewer.watch()
                await watch.wait_frames(1, timeout=15)
                assert watch.offer_to_first_frame is not None
                assert watch.time_to_first_frame is not None
                offer_ms.append(watch.offer_to_first_frame * 1000)
                hello_ms.append(watch.time_to_first_frame * 1000)
                await watch.bye()
                if cold:
                    await daemon.wait_status(lambda s: s.get("camera") == "idle", 10)
    return {"offer_to_first_frame_ms": offer_ms, "hello_to_first_frame_ms": hello_ms}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--cold", action="store_true", help="camera stopped between runs")
    parser.add_argument("--json", help="also write the raw figures here")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    result = asyncio.run(measure(args.runs, width, height, args.cold))
    print(f"machine: {machine()}")
    print(f"time to first frame, {args.size}, camera {'cold' if args.cold else 'warm'} (ms):")
    print(f"  offer -> first decoded frame: {summary(result['offer_to_first_frame_ms'])}")
    print(f"  hello -> first decoded frame: {summary(result['hello_to_first_frame_ms'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
