"""A Python viewer that follows ``welcome.relay``: it subscribes from Janus, as the dashboard does.

As a script, inside a lab namespace::

    ip netns exec <ns> python -m tests.janus_viewer --broker mqtt://198.18.0.1:1883 \\
        --device frontdoor --host-network 10.2.0.0/24 --frames 10 --subscriptions 1

It says ``hello``; a welcome without ``relay`` means peer-to-peer (it then
watches as tests/netlab_viewer.py does); with ``relay`` it waits for
``status.relay.feed``, subscribes to that feed through Janus's WebSocket API,
decodes the frames (aiortc), renews its lease with ``hello`` every
``relay.renew`` s, and resubscribes by itself whenever the feed changes or
Janus goes away (what the dashboard does).  It prints one JSON line per event
and a summary as the last line; every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from peercam.relay.janus_api import VIDEOROOM, JanusClient, JanusError, JanusGone
from tests.viewer import (
    SignalingError,
    Viewer,
    ice_servers_from_welcome,
    new_session_id,
    restrict_ice_to,
)

Message = dict[str, Any]


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t": round(time.monotonic(), 3), **fields}), flush=True)


@dataclass
class JanusSubscription:
    """One subscription to one feed: a Janus session, a handle and an aiortc receiver."""

    url: str
    room: int
    feed: int
    ice_servers: list[Any] = field(default_factory=list)
    pin: str | None = None
    frames: int = 0
    first_frame_at: float | None = None
    started_at: float = field(default_factory=time.monotonic)
    errors: list[str] = field(default_factory=list)
    client: JanusClient | None = None
    pc: RTCPeerConnection | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def start(self, timeout: float = 10.0) -> None:
        self.client = await JanusClient.connect(self.url, timeout=timeout)
        handle = await self.client.attach(VIDEOROOM)
        join: Message = {
            "request": "join",
            "ptype": "subscriber",
            "room": self.room,
            "streams": [{"feed": self.feed}],
        }
        if self.pin:
            join["pin"] = self.pin
        _, offer = await self.client.message(handle, join, timeout=timeout)
        if offer is None:
            raise JanusError(None, "no offer in the subscriber's 'attached' event", "join")
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=list(self.ice_servers)))
        pc.on("track", self._on_track)
        await pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], "offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answer = {"type": "answer", "sdp": pc.localDescription.sdp}
        await self.client.message(handle, {"request": "start"}, answer, timeout=timeout)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "video":
            self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                await track.recv()
            except MediaStreamError:
                return
            except Exception as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                return
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
            self.frames += 1

    @property
    def gone(self) -> bool:
        """Janus closed the socket, or the media connection failed."""
        if self.client is not None and self.client.closed.done():
            return True
        return self.pc is not None and self.pc.connectionState in ("failed", "closed")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self.pc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pc.close(), 5)
        if self.client is not None:
            await self.client.close()


async def wait_feed(viewer: Viewer, avoid: int | None, timeout: float) -> Message:
    """The device's ``status.relay`` once it names a feed other than ``avoid``."""
    status = await viewer.wait_status(
        lambda s: (s.get("relay") or {}).get("feed") not in (None, avoid), timeout=timeout
    )
    return dict(status["relay"])


async def follow(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "path": None, "subscriptions": [], "error": None}
    restrict_ice_to(args.host_network)
    viewer = Viewer(
        args.broker, device=args.device, viewer_id=args.viewer, host_networks=args.host_network
    )
    await viewer.connect()
    sid = new_session_id()
    sub: JanusSubscription | None = None
    try:
        hello_at = time.monotonic()
        await viewer.send({"type": "hello", "session": sid})
        welcome = await viewer.expect_reply(sid, "welcome", 10)
        relay = welcome.get("relay")
        if relay is None:
            result["path"] = "p2p"
            emit("p2p")
            viewer.last_welcome = welcome
            viewer.ice_servers = list(welcome.get("ice_servers") or [])
            watch = await viewer.watch(sid, hello=False, timeout=args.timeout)
            await watch.wait_frames(args.frames, args.timeout)
            result["frames"] = watch.frames
            result["ok"] = True
            if args.hold > 0:
                await asyncio.sleep(args.hold)
            await watch.bye()
            return result
        result["path"] = "relay"
        result["welcome_relay"] = relay
        emit("relayed", relay=relay)
        ice = ice_servers_from_welcome(welcome.get("ice_servers"))
        renew = float(relay.get("renew") or 30)
        renewed = time.monotonic()
        feed: int | None = None
        deadline = time.monotonic() + args.timeout * max(1, args.subscriptions) * 2
        done: list[dict[str, Any]] = result["subscriptions"]
        while time.monotonic() < deadline:
            if time.monotonic() - renewed > renew:
                await viewer.send({"type": "hello", "session": sid})
                renewed = time.monotonic()
            if sub is None:
                try:
                    where = await wait_feed(viewer, feed, args.timeout)
                except AssertionError as exc:
                    result["error"] = f"no feed in status.relay: {exc}"
                    break
                feed = int(where["feed"])
                sub = JanusSubscription(
                    str(where["url"]), int(where["room"]), feed, ice, pin=where.get("pin")
                )
                try:
                    await sub.start()
                    emit("subscribed", feed=feed, after=round(time.monotonic() - hello_at, 3))
                except (JanusError, JanusGone, OSError, TimeoutError) as exc:
                    emit("subscribe-failed", feed=feed, error=str(exc))
                    await sub.close()
                    sub = None
                    await asyncio.sleep(0.5)
                    continue
            now_feed = ((viewer.status or {}).get("relay") or {}).get("feed")
            if sub.gone or (now_feed is not None and now_feed != sub.feed):
                emit("lost", feed=sub.feed, frames=sub.frames, now_feed=now_feed)
                done.append(summary(sub))
                await sub.close()
                sub = None
                continue
            if sub.frames >= args.frames and not any(d["feed"] == sub.feed for d in done):
                ttff = sub.first_frame_at - sub.started_at if sub.first_frame_at else None
                emit("frames", feed=sub.feed, frames=sub.frames, subscribe_to_first_frame=ttff)
                done.append(summary(sub))
                if len(done) >= args.subscriptions:
                    result["ok"] = True
                    break
            await asyncio.sleep(0.05)
        else:
            result["error"] = f"gave up after {args.timeout} s per subscription"
    except (SignalingError, AssertionError) as exc:
        result["error"] = str(exc)
        result["device_error"] = getattr(exc, "error", None)
    finally:
        if sub is not None:
            if sub.feed not in [d["feed"] for d in result["subscriptions"]]:
                result["subscriptions"].append(summary(sub))
            await sub.close()
        with contextlib.suppress(Exception):
            await viewer.send({"type": "bye", "session": sid})
        await viewer.close()
    return result


def summary(sub: JanusSubscription) -> dict[str, Any]:
    return {
        "feed": sub.feed,
        "frames": sub.frames,
        "subscribe_to_first_frame": (
            None if sub.first_frame_at is None else sub.first_frame_at - sub.started_at
        ),
        "errors": sub.errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="frontdoor")
    parser.add_argument("--viewer", default="janusviewer")
    parser.add_argument("--host-network", action="append", default=[])
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--subscriptions", type=int, default=1, help="distinct feeds to see")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--hold", type=float, default=0.0, help="P2P: keep watching this long")
    args = parser.parse_args()
    try:
        result = asyncio.run(follow(args))
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, default=str), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
