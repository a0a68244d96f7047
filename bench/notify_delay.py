"""Press → notification request: how soon a ring leaves the device, and what sending costs the loop.

    python -m bench.notify_delay [--presses 9] [--snapshot-wait 2.0] [--baseline]

An in-process daemon (test pattern 1280x720, ``[camera] idle_stop`` 0 so
each press starts the camera, as on a quiet doorbell), real Mosquitto, an
Apprise ``json://`` endpoint and a Web Push endpoint that verifies VAPID and
decrypts (``tests/push_service.py``), all on 127.0.0.1.  Per press: the
time from ``press_call_button()`` to the request's body arriving at each
endpoint (both include the snapshot: a ring waits up to
``[notify] snapshot_wait`` for it).  Meanwhile a 5 ms ticker on the daemon's
loop records its worst lateness: the loop's worst stall while sending.
The endpoints run as threads in the same process (they share the GIL).
``--baseline`` presses the same way with notifications off (no URL, no Web
Push) and waits 0.5 s per press: the loop's stall from the ring itself
(camera start, snapshot), to compare with.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import stats, summary, write_result
from device.config import config_from_dict
from device.daemon import Daemon
from tests.daemon_proc import default_config, merge_config
from tests.http_sink import HttpSink
from tests.mosquitto import MosquittoBroker
from tests.push_service import PushService
from tests.waiting import wait_until


async def ticker(worst: list[float], stop: asyncio.Event, every: float = 0.005) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        start = loop.time()
        await asyncio.sleep(every)
        worst[0] = max(worst[0], loop.time() - start - every)


async def run(presses: int, snapshot_wait: float, baseline: bool = False) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="peercam-notify-bench-"))
    broker = MosquittoBroker(work / "mosquitto").start()
    sink = HttpSink().start()
    push = PushService().start()
    browser = push.new_subscription("phone")
    config = config_from_dict(
        merge_config(
            default_config(broker.url),
            {
                "camera": {"width": 1280, "height": 720, "idle_stop": 0.0},
                "call": {"min_press_interval": 0.0, "state_dir": str(work / "state")},
                "notify": {"urls": [sink.url("json")], "snapshot_wait": snapshot_wait}
                if not baseline
                else {"web_push": False},
                "gpio": {"enabled": False},
            },
        )
    )
    daemon = Daemon(config)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await asyncio.wait_for(daemon.ready.wait(), 20)
        assert daemon.notifications is not None
        if not baseline:
            daemon.notifications.subscribe("bench", browser.subscription())
        apprise_ms: list[float] = []
        push_ms: list[float] = []
        stalls_ms: list[float] = []
        for n in range(presses + 1):  # the first is a warm-up (imports, first connection)
            worst = [0.0]
            tick_stop = asyncio.Event()
            tick = asyncio.create_task(ticker(worst, tick_stop))
            before_a, before_p = len(sink.requests), len(push.pushes)
            pressed = time.monotonic()
            daemon.press_call_button()
            if baseline:
                await asyncio.sleep(0.5)
            else:
                await wait_until(lambda a=before_a: len(sink.requests) > a, "apprise", timeout=20)
                await wait_until(lambda p=before_p: len(push.pushes) > p, "push", timeout=20)
            call = daemon.calls.call if daemon.calls else None
            await asyncio.sleep(0.3)  # the snapshot's publication and the sends settle
            tick_stop.set()
            await tick
            if call and daemon.calls:
                daemon.calls.decline("bench", call)
            await asyncio.sleep(0.5)  # the camera stops (idle_stop 0) before the next press
            if n == 0:
                continue
            stalls_ms.append(worst[0] * 1000)
            if baseline:
                continue
            apprise_ms.append((sink.requests[before_a].received - pressed) * 1000)
            push_arrival = push.sink.requests[-1].received
            push_ms.append((push_arrival - pressed) * 1000)
        assert not push.problems, push.problems
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        sink.stop()
        push.stop()
        broker.stop()
    return {
        "presses": presses,
        "snapshot_wait": snapshot_wait,
        "baseline": baseline,
        "press_to_apprise_ms": stats(apprise_ms),
        "press_to_webpush_ms": stats(push_ms),
        "loop_worst_stall_ms": stats(stalls_ms),
        "raw": {"apprise": apprise_ms, "webpush": push_ms, "stall": stalls_ms},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=9)
    parser.add_argument("--snapshot-wait", type=float, default=2.0)
    parser.add_argument("--baseline", action="store_true", help="notifications off")
    args = parser.parse_args()
    result = asyncio.run(run(args.presses, args.snapshot_wait, args.baseline))
    print(f"press -> Apprise request : {summary(result['raw']['apprise'])} ms")
    print(f"press -> Web Push request: {summary(result['raw']['webpush'])} ms")
    print(f"event loop worst stall   : {summary(result['raw']['stall'])} ms")
    name = "notify_delay_baseline" if args.baseline else "notify_delay"
    print(f"wrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
