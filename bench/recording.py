"""Recording's cost and speed: CPU and RSS with recording on vs off, the pre-roll ring's
memory, event → clip listed, clip playback's time to first frame, bytes written per clip.

    python -m bench.recording [--sizes 1280x720,1920x1080] [--seconds 20] [--runs 5]

Real Mosquitto and the real daemon (subprocess), all on 127.0.0.1; the camera is the
test pattern with grain (``noise``: the encoder spends its whole 2 Mbit/s, as a real
sensor does), IDR every 2 s, 30 fps. One Python viewer (not decoding) watches in both
runs, so the camera runs either way and the difference is the recorder itself (ring,
taps, the folder checks). Pre-roll 5 s, post-roll 5 s.

- CPU: the daemon's user+system seconds over ``--seconds``, as % of one core.
- RSS: VmRSS after that window. Ring: what the daemon logs at an event
  (``ring N KiB``: the pre-roll held, from the IDR before now - 5 s).
- Event → listed: a viewer sends ``record`` and waits for the clip in the retained
  ``clips`` topic; minus the post-roll, that is the write (remux + thumbnail + index).
- Playback first frame: ``hello`` → first decoded picture of an offer naming the clip,
  next to the same for live video.
- Writes per clip: the MP4, the JPEG and ``clips.json``, each written once (sizes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt

from bench.harness import cpu_seconds, device, machine, rss_mib, run_bench, write_result
from bench.nodecode import no_decoding
from tests.viewer import Viewer

PREROLL, POSTROLL = 5.0, 5.0


def overrides(size: str, recording: bool, clips: Path) -> dict[str, Any]:
    width, height = (int(x) for x in size.split("x"))
    cfg: dict[str, Any] = {
        "camera": {
            "width": width,
            "height": height,
            "fps": 30,
            "bitrate": 2_000_000,
            "keyframe_interval": 60,
            "pattern": "noise",
            "idle_stop": 60,
        },
        "webrtc": {"max_viewers": 8, "max_sessions_per_viewer": 8},
    }
    if recording:
        cfg["recording"] = {
            "enabled": True,
            "dir": str(clips),
            "preroll": PREROLL,
            "postroll": POSTROLL,
            "max_playbacks": 4,
        }
    return cfg


async def listed_clips(broker_url: str, topic: str, seen: asyncio.Queue[list[dict]]) -> None:
    host, port = broker_url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        await client.subscribe(topic, qos=1)
        async for message in client.messages:
            body = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            await seen.put(body["clips"])


async def one_size(size: str, args: argparse.Namespace) -> dict[str, Any]:
    row: dict[str, Any] = {"size": size}
    for recording in (False, True):
        with tempfile.TemporaryDirectory(prefix="peercam-bench-clips-") as tmp:
            clips = Path(tmp)
            async with device(overrides(size, recording, clips)) as daemon:
                label = "on" if recording else "off"
                async with Viewer(daemon.broker_url, device="bench", viewer_id="watcher") as v:
                    with no_decoding():
                        watch = await v.watch(timeout=30)
                        await watch.wait_frames(10, timeout=30)
                    await asyncio.sleep(PREROLL + 3)  # the ring fills; allocator settles
                    c0, t0 = cpu_seconds(daemon.pid), time.monotonic()
                    await asyncio.sleep(args.seconds)
                    cpu = (cpu_seconds(daemon.pid) - c0) / (time.monotonic() - t0) * 100
                    row[f"cpu_pct_{label}"] = round(cpu, 1)
                    row[f"rss_mib_{label}"] = round(rss_mib(daemon.pid), 1)
                    rss = row[f"rss_mib_{label}"]
                    print(f"  {size} recording {label}: CPU {cpu:.1f} % RSS {rss} MiB", flush=True)
                    if recording:
                        row.update(await clip_figures(daemon, v, clips, args))
                    await watch.bye()
    return row


async def clip_figures(
    daemon: Any, viewer: Viewer, clips: Path, args: argparse.Namespace
) -> dict[str, Any]:
    seen: asyncio.Queue[list[dict]] = asyncio.Queue()
    listener = asyncio.create_task(listed_clips(daemon.broker_url, "peercam/bench/clips", seen))
    listed_s: list[float] = []
    ring_kib: list[int] = []
    try:
        for _ in range(args.clips):
            before = {c["id"] for c in (seen.get_nowait() if not seen.empty() else [])}
            await viewer.send({"type": "record"})
            t0 = time.monotonic()
            reply = await viewer.next_message("recorded", timeout=10)
            while True:
                entries = await asyncio.wait_for(seen.get(), PREROLL + POSTROLL + 30)
                if reply["clip"] in {c["id"] for c in entries} - before:
                    break
            listed_s.append(time.monotonic() - t0)
            found = re.findall(
                rf"clip {reply['clip']}: manual event, .*?ring (\d+) KiB", daemon.log_text()
            )
            ring_kib += [int(x) for x in found]
            await asyncio.sleep(1)
        entry = entries[0]
        files = await asyncio.to_thread(lambda: {p.name: p.stat().st_size for p in clips.iterdir()})
        mp4 = files[f"{entry['id']}.mp4"]
        jpg = files.get(f"{entry['id']}.jpg", 0)
        index = files.get("clips.json", 0)
        # playback time to first frame vs live
        play_ms, live_ms = [], []
        for _ in range(args.runs):
            play = await viewer.watch(clip=entry["id"], timeout=30)
            await play.wait_frames(1, timeout=20)
            play_ms.append(play.time_to_first_frame * 1000)  # type: ignore[operator]
            await play.bye()
            live = await viewer.watch(timeout=30)
            await live.wait_frames(1, timeout=20)
            live_ms.append(live.time_to_first_frame * 1000)  # type: ignore[operator]
            await live.bye()
            await asyncio.sleep(0.5)
    finally:
        listener.cancel()
        with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
            await listener
    out = {
        "clip_duration_s": entry["duration"],
        "event_to_listed_s_median": round(statistics.median(listed_s), 2),
        "write_after_postroll_s_median": round(statistics.median(listed_s) - POSTROLL, 2),
        "ring_kib_median": int(statistics.median(ring_kib)) if ring_kib else None,
        "bytes_per_clip": {"mp4": mp4, "jpeg": jpg, "index": index, "total": mp4 + jpg + index},
        "playback_first_frame_ms_median": round(statistics.median(play_ms), 1),
        "live_first_frame_ms_median": round(statistics.median(live_ms), 1),
    }
    print(f"  {json.dumps(out)}", flush=True)
    return out


async def main(args: argparse.Namespace) -> None:
    rows = []
    for size in args.sizes.split(","):
        rows.append(await one_size(size, args))
    print(f"machine: {machine()}")
    for r in rows:
        print(
            f"{r['size']}: CPU {r['cpu_pct_off']} → {r['cpu_pct_on']} % of a core, "
            f"RSS {r['rss_mib_off']} → {r['rss_mib_on']} MiB, ring {r.get('ring_kib_median')} KiB, "
            f"event→listed {r.get('event_to_listed_s_median')} s (post-roll {POSTROLL:g} s), "
            f"playback first frame {r.get('playback_first_frame_ms_median')} ms "
            f"(live {r.get('live_first_frame_ms_median')} ms), "
            f"bytes/clip {r.get('bytes_per_clip', {}).get('total')}"
        )
    write_result("recording", {"preroll": PREROLL, "postroll": POSTROLL, "rows": rows}, args.out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1280x720,1920x1080")
    parser.add_argument("--seconds", type=float, default=20.0, help="CPU window per run")
    parser.add_argument("--clips", type=int, default=3, help="clips recorded per size")
    parser.add_argument("--runs", type=int, default=5, help="playback first-frame runs")
    parser.add_argument("--out", default=None)
    run_bench(main(parser.parse_args()))
