"""One Python viewer on a throttled link (run inside ``bench.netns``'s namespace).

    ip netns exec NS python -m bench.slow_viewer --broker mqtt://10.203.9.1:PORT \\
        --device bench --network 10.203.9.0/30 --seconds 20

Watches for ``--seconds`` and prints one JSON line: frames, fps, key frames,
its own glass-to-glass samples.  ``bench.latency`` starts it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from bench.g2g import LatencyMeter
from bench.harness import stats
from tests.viewer import Viewer


async def run(args: argparse.Namespace) -> dict[str, object]:
    meter = LatencyMeter()
    viewer = Viewer(args.broker, device=args.device, viewer_id="slow", host_networks=[args.network])
    viewer.frame_hook = meter
    async with viewer:
        watch = await viewer.watch(timeout=30)
        # Connected is enough: on a hopeless link the first picture may never decode.
        await watch.wait_connection_state("connected", timeout=30)
        print(json.dumps({"event": "watching"}), flush=True)
        frames0, t0 = watch.frames, time.monotonic()
        meter.take()
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - t0
        samples = [x for v in meter.take().values() for x in v]
        return {
            "event": "done",
            "fps": round((watch.frames - frames0) / wall, 2),
            "keyframes": sum(meter.keyframes.values()),
            "g2g_ms": stats(samples),
            "unreadable": meter.unreadable,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="bench")
    parser.add_argument("--network", required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    try:
        print(json.dumps(asyncio.run(run(args))), flush=True)
    except Exception as exc:
        print(json.dumps({"event": "failed", "error": f"{type(exc).__name__}: {exc}"}))
        sys.exit(1)


if __name__ == "__main__":
    main()
