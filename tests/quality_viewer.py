"""A Python viewer for a network namespace: reports what it decodes, twice a second.

    ip netns exec NS python -m tests.quality_viewer --broker mqtt://10.203.9.1:PORT \\
        --device frontdoor --network 10.203.9.0/30 --quality auto --seconds 60

Prints one JSON line per report: ``t`` (seconds since watching began, its
own clock), ``frames`` (decoded so far), ``sizes`` ({"WxH": decoded frames
of that size so far}), ``keyframes``, ``stream`` (the device's last
``stream`` message: "main"/"sub"), then ``{"event": "done"}``.  A line
``quality <value>`` on stdin sends a ``quality`` message.  Used by the
namespace tests and ``bench.substream``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time

from tests.viewer import Viewer


async def run(args: argparse.Namespace) -> None:
    viewer = Viewer(
        args.broker, device=args.device, viewer_id=args.viewer, host_networks=[args.network]
    )
    # generous: this process starts inside a namespace on a loaded machine
    await viewer.connect(timeout=30)
    try:
        await watch_and_report(viewer, args)
    finally:
        await viewer.close()
    print(json.dumps({"event": "done"}), flush=True)


async def watch_and_report(viewer: Viewer, args: argparse.Namespace) -> None:
    watch = await viewer.watch(timeout=30, quality=args.quality)
    stream: dict[str, object] = {}

    async def follow_stream() -> None:
        while True:
            message = await viewer.next_message("stream", session=watch.id, timeout=3600)
            stream.update(message)

    async def commands() -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while line := await reader.readline():
            words = line.decode().split()
            if len(words) == 2 and words[0] == "quality":
                await viewer.send({"type": "quality", "session": watch.id, "quality": words[1]})

    tasks = [asyncio.create_task(follow_stream()), asyncio.create_task(commands())]
    t0 = time.monotonic()
    try:
        while (now := time.monotonic() - t0) < args.seconds:
            sizes = {f"{w}x{h}": n for (w, h), n in watch.frame_sizes.items()}
            report = {
                "t": round(now, 3),
                "frames": watch.frames,
                "sizes": sizes,
                "keyframes": len(watch.keyframes),
                "stream": stream.get("stream"),
                "state": watch.connection_state,
            }
            print(json.dumps(report), flush=True)
            await asyncio.sleep(0.5)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="frontdoor")
    parser.add_argument("--viewer", default="slow")
    parser.add_argument("--network", required=True)
    parser.add_argument("--quality", default="auto", choices=("auto", "high", "low"))
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    try:
        asyncio.run(run(args))
    except Exception as exc:
        print(json.dumps({"event": "failed", "error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
