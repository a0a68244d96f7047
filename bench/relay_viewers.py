"""N viewers in one process, inside a lab namespace, for ``bench.relay`` (not run by hand).

``--mode p2p``: PROTOCOL.md sessions with the device; ``--mode janus``: hello
(lease) and a Janus subscription each, as ``welcome.relay`` says.  Nobody
decodes (``bench.nodecode``): the numbers are the device's, not the viewers'.
Prints ``READY`` once every viewer has frames, ``WINDOW-START`` /
``WINDOW-END`` around the measured window, then one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from typing import Any

from bench.nodecode import no_decoding
from tests.janus_viewer import JanusSubscription, wait_feed
from tests.viewer import Viewer, ice_servers_from_welcome, new_session_id, restrict_ice_to


async def p2p_viewer(args: argparse.Namespace, i: int) -> tuple[Viewer, Any]:
    viewer = Viewer(
        args.broker, device=args.device, viewer_id=f"bench{i}", host_networks=args.host_network
    )
    await viewer.connect()
    watch = await viewer.watch(timeout=60)
    return viewer, watch


async def janus_viewer(args: argparse.Namespace, i: int) -> tuple[Viewer, JanusSubscription]:
    viewer = Viewer(
        args.broker, device=args.device, viewer_id=f"bench{i}", host_networks=args.host_network
    )
    await viewer.connect()
    sid = new_session_id()
    await viewer.send({"type": "hello", "session": sid})
    welcome = await viewer.expect_reply(sid, "welcome", 30)
    relay = welcome["relay"]
    where = await wait_feed(viewer, None, 30)
    sub = JanusSubscription(
        str(where["url"]),
        int(where["room"]),
        int(where["feed"]),
        ice_servers_from_welcome(welcome.get("ice_servers")),
        pin=relay.get("pin"),
    )
    await sub.start(timeout=30)
    return viewer, sub


def frames(item: Any) -> int:
    return int(item.frames)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    restrict_ice_to(args.host_network)
    make = p2p_viewer if args.mode == "p2p" else janus_viewer
    pairs = []
    for i in range(args.n):  # one at a time: the device's handshake limit, a fair start
        pairs.append(await make(args, i))
    items = [item for _, item in pairs]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and min(frames(x) for x in items) < 10:
        await asyncio.sleep(0.2)
    print("READY", flush=True)
    await asyncio.sleep(args.settle)
    before = [frames(x) for x in items]
    t0 = time.monotonic()
    print("WINDOW-START", flush=True)
    await asyncio.sleep(args.seconds)
    print("WINDOW-END", flush=True)
    wall = time.monotonic() - t0
    fps = [round((frames(x) - b) / wall, 2) for x, b in zip(items, before, strict=True)]
    for viewer, item in pairs:
        with contextlib.suppress(Exception):
            await item.close() if args.mode == "janus" else await item.bye()
        with contextlib.suppress(Exception):
            await viewer.close()
    return {"mode": args.mode, "n": args.n, "fps": fps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="frontdoor")
    parser.add_argument("--host-network", action="append", default=[])
    parser.add_argument("--mode", choices=["p2p", "janus"], required=True)
    parser.add_argument("--n", type=int, default=1)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with no_decoding():
        result = asyncio.run(main_async(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
