"""A viewer that runs INSIDE the booted container (tests/test_pi_nspawn.py): what a user's
phone would do, but from the container's loopback, the only network it has.

Run with the installed venv's Python (``/opt/peercam/venv/bin/python``, which has
aiortc, PyAV and aiomqtt), with ``tests/viewer.py`` and ``tests/tone.py`` copied
next to it as the package ``tests``::

    python -m tests.pi_probe watch   --password-file F   # status online, decode frames
    python -m tests.pi_probe call    --password-file F   # ring, snapshot, answer, talk back
    python -m tests.pi_probe stop    --password-file F   # systemctl stop while watching
    python -m tests.pi_probe online  --password-file F   # wait for online (after a restart)

Each prints one JSON object (what it saw) as its last line; a failed expectation
exits non-zero with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
from pathlib import Path
from typing import Any

import aiomqtt
import av

from tests.tone import ToneTrack, dominant_frequency, read_wav, rms
from tests.viewer import Viewer

BROKER = "mqtt://127.0.0.1:1883"
DEVICE = "frontdoor"
TALKBACK_WAV = Path("/var/lib/peercam/talkback.wav")


async def retained(topic: str, user: str, password: str, timeout: float = 10.0) -> bytes:
    async with aiomqtt.Client("127.0.0.1", 1883, username=user, password=password) as client:
        await client.subscribe(topic, qos=1)
        async with asyncio.timeout(timeout):
            async for message in client.messages:
                payload = message.payload
                assert isinstance(payload, bytes | bytearray), payload
                return bytes(payload)
    raise AssertionError("unreachable")


async def systemctl(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "systemctl", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise AssertionError(f"systemctl {' '.join(args)}: {out.decode()}")
    return out.decode()


async def online(viewer: Viewer, timeout: float) -> dict[str, Any]:
    return await viewer.wait_status(state="online", timeout=timeout)


async def cmd_online(viewer: Viewer, args: argparse.Namespace) -> dict[str, Any]:
    return {"status": await online(viewer, args.timeout)}


async def cmd_watch(viewer: Viewer, args: argparse.Namespace) -> dict[str, Any]:
    status = await online(viewer, args.timeout)
    watch = await viewer.watch(timeout=args.timeout)
    await watch.wait_frames(args.frames, timeout=args.timeout)
    pair = watch.selected_pair()
    assert watch.welcome is not None
    result = {
        "status": status,
        "frames": watch.frames,
        "sizes": sorted({f"{w}x{h}" for w, h in watch.frame_sizes}),
        "pair": str(pair),
        "ice_servers": [s["urls"] for s in watch.welcome.get("ice_servers") or []],
    }
    await watch.bye()
    return result


async def cmd_call(viewer: Viewer, args: argparse.Namespace) -> dict[str, Any]:
    await online(viewer, args.timeout)
    # --fake-hardware: SIGUSR1 presses the (mock) call button, as scripts do.
    await systemctl("kill", "--kill-whom=main", "--signal=SIGUSR1", "peercam.service")
    ring = await viewer.next_event(timeout=args.timeout)
    assert ring["type"] == "call", ring
    call = ring["call"]
    jpeg = await retained(f"peercam/{DEVICE}/snapshot/{call}", viewer.username, args.password)
    with av.open(io.BytesIO(jpeg)) as container:
        picture = next(container.decode(video=0))
    watch = await viewer.watch(call=call, send_audio=ToneTrack(440.0), timeout=args.timeout)
    await watch.wait_frames(10, timeout=args.timeout)

    def heard() -> bool:
        if not TALKBACK_WAV.exists():
            return False
        samples, _ = read_wav(str(TALKBACK_WAV))
        return len(samples) > 48_000

    for _ in range(int(args.timeout * 10)):
        if heard():
            break
        await asyncio.sleep(0.1)
    assert heard(), f"no second of talkback in {TALKBACK_WAV}"
    samples, rate = read_wav(str(TALKBACK_WAV))
    await watch.bye()
    await viewer.wait_status(call=None, timeout=args.timeout)
    calls = json.loads(await retained(f"peercam/{DEVICE}/calls", viewer.username, args.password))
    return {
        "call": call,
        "snapshot": [picture.width, picture.height],
        "frames": watch.frames,
        "talkback_rms": rms(samples),
        "talkback_hz": dominant_frequency(samples[-48_000:], rate),
        "calls": calls,
    }


async def cmd_stop(viewer: Viewer, args: argparse.Namespace) -> dict[str, Any]:
    await online(viewer, args.timeout)
    watch = await viewer.watch(timeout=args.timeout)
    await watch.wait_frames(5, timeout=args.timeout)
    stopping = asyncio.create_task(systemctl("stop", "peercam.service"))
    bye = await watch.wait_bye(timeout=args.timeout)
    await stopping
    status = json.loads(await retained(f"peercam/{DEVICE}/status", viewer.username, args.password))
    return {"bye": bye, "retained_status": status}


COMMANDS = {"online": cmd_online, "watch": cmd_watch, "call": cmd_call, "stop": cmd_stop}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    viewer = Viewer(BROKER, device=DEVICE, viewer_id=args.viewer, password=args.password)
    await viewer.connect(timeout=args.timeout)
    try:
        return await COMMANDS[args.command](viewer, args)
    finally:
        await viewer.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="pi_probe")
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--viewer", default="alice")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    args.password = Path(args.password_file).read_text().strip()
    result = asyncio.run(main(args))
    print(json.dumps(result, default=str))
    sys.exit(0)
