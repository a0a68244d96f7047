"""The Python viewer (tests/viewer.py) as a script, to run inside a NAT-lab namespace.

``ip netns exec <ns> python -m tests.netlab_viewer --broker mqtt://198.18.0.1:1883
--device frontdoor --host-network 10.2.0.0/24 --turn tcp`` watches one session
and prints one JSON object (the last line of stdout): how it went, the
selected candidate pair, and the timings.  Every wait is bounded.

aiortc uses only the first STUN and the first TURN URL: ``--turn`` picks
which of the welcome's TURN URLs this viewer uses (``udp``, ``tcp``,
``tls``; ``none`` for no TURN), as a browser would by trying them all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from peercam.ice import split_ice_url
from tests.viewer import Message, SignalingError, Viewer, new_session_id


def pick_servers(servers: list[Message], turn: str, stun: bool) -> list[Message]:
    """The welcome's servers with only the wanted TURN URL (first), STUN kept or dropped."""
    picked: list[Message] = []
    for server in servers:
        urls = server["urls"] if isinstance(server["urls"], list) else [server["urls"]]
        keep = []
        for url in urls:
            scheme, _, _, transport = split_ice_url(url)
            kind = "tls" if scheme == "turns" else (transport or "udp")
            wanted = stun if scheme.startswith("stun") else kind == turn
            if wanted:
                keep.append(url)
        if keep:
            picked.append({**server, "urls": keep})
    return picked


async def watch_once(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"ok": False, "error": None}
    viewer = Viewer(
        args.broker,
        device=args.device,
        viewer_id=args.viewer,
        host_networks=args.host_network,
    )
    await viewer.connect()
    try:
        sid = new_session_id()
        hello_at = time.monotonic()
        await viewer.send({"type": "hello", "session": sid})
        welcome = await viewer.expect_reply(sid, "welcome", 10)
        result["welcome_ice_servers"] = welcome.get("ice_servers")
        viewer.last_welcome = welcome
        viewer.ice_servers = pick_servers(
            list(welcome.get("ice_servers") or []), args.turn, not args.no_stun
        )
        result["used_ice_servers"] = [s["urls"] for s in viewer.ice_servers]
        watch = await viewer.watch(sid, hello=False, timeout=args.timeout)
        result["offer_to_answer"] = (watch.answer_at or 0) - (watch.offer_sent_at or 0)
        result["viewer_gathering"] = (watch.offer_sent_at or 0) - hello_at
        try:
            if args.expect_failure:
                await watch.wait_bye(args.timeout)
            else:
                await watch.wait_frames(args.frames, args.timeout)
                result["ok"] = True
        except AssertionError as exc:
            result["error"] = str(exc)
        pair = watch.selected_pair()
        result["pair"] = (
            None
            if pair is None
            else {
                "local_type": pair.local_type,
                "local": f"{pair.local_address}:{pair.local_port}",
                "remote_type": pair.remote_type,
                "remote": f"{pair.remote_address}:{pair.remote_port}",
            }
        )
        if watch.pc is not None:
            gatherer = watch.pc.getTransceivers()[0].receiver.transport.transport.iceGatherer
            result["local_candidates"] = sorted({c.type for c in gatherer.getLocalCandidates()})
        result["frames"] = watch.frames
        result["time_to_first_frame"] = (
            None if watch.first_frame_at is None else watch.first_frame_at - hello_at
        )
        result["connection_state"] = watch.connection_state
        result["bye"] = watch.device_bye
        result["ended_after"] = time.monotonic() - hello_at
        await watch.bye()
    except SignalingError as exc:
        result["error"] = f"signaling: {exc}"
    finally:
        await viewer.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--broker", required=True)
    parser.add_argument("--device", default="frontdoor")
    parser.add_argument("--viewer", default="labviewer")
    parser.add_argument("--host-network", action="append", default=[])
    parser.add_argument("--turn", choices=["udp", "tcp", "tls", "none"], default="udp")
    parser.add_argument("--no-stun", action="store_true")
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--expect-failure", action="store_true", help="wait for the device's bye")
    args = parser.parse_args()
    try:
        result = asyncio.run(asyncio.wait_for(watch_once(args), args.timeout * 3))
    except Exception as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result, default=str), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
