"""One fast viewer and one behind a 600 kbit/s link: before and after the substream (root only).

    sudo .venv/bin/python -m bench.substream [--seconds 20] [--rate 600kbit]

The device sends 1280x720@30 at 2 Mbit/s (the ``noise`` pattern). The fast
viewer watches over loopback; the slow one runs in a network namespace
whose downlink is shaped with ``tc tbf`` (``bench.netns``). Two runs:

- ``before``: ``[camera] substream = false`` and ``PEERCAM_BENCH_NO_PACING=1``
  (one stream, aiortc's unpaced sending: what peercam did before issue 14,
  keyframe fix included);
- ``after``: the defaults (substream 640x360 at 400 kbit/s, ``auto``, paced).

Per run: the slow viewer's decoded fps and frame sizes (whole window, and its
last half), when it switched (from its ``stream`` messages); the fast
viewer's fps, IDR rate and received bitrate; what the device sent into the
slow link (an iptables OUTPUT counter, before the shaper drops anything)
against what arrived there; the device's upload against what both viewers
received; the daemon's CPU. Then the daemon's CPU with the substream running
against the same run with ``substream = false`` (the ``cpu`` rows: one viewer
on each stream vs two on main). Prints a table; ``--out`` writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds, machine_info, run_bench, write_result
from bench.netns import Namespace, available, count_sent, counters, throttled_namespace
from tests.daemon_proc import DaemonProcess, default_config, merge_config
from tests.mosquitto import MosquittoBroker, free_port
from tests.viewer import Viewer

ROOT = Path(__file__).resolve().parent.parent
CASES = (
    ("before", False, False),  # one stream, unpaced: peercam before issue 14
    ("substream-unpaced", True, False),  # the substream alone
    ("after", True, True),  # substream and pacing (the defaults)
)


def rx_bytes(watch: Any) -> int:
    """Bytes the viewer's DTLS transport received (RTP + RTCP, after SRTP)."""
    assert watch.pc is not None
    total = 0
    seen = set()
    for transceiver in watch.pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None or id(dtls) in seen:
            continue
        seen.add(id(dtls))
        total += dtls._RTCDtlsTransport__rx_bytes
    return total


async def run_case(
    name: str, tmp: Path, ns: Namespace, seconds: float, substream: bool, paced: bool
) -> dict[str, Any]:
    port = free_port()
    broker = MosquittoBroker(
        tmp / f"mq-{name}", extra_config=f"listener {port} {ns.host_ip}\nprotocol mqtt"
    )
    broker.start()
    config = merge_config(
        default_config(broker.url, device="bench"),
        {
            "camera": {
                "width": 1280,
                "height": 720,
                "fps": 30,
                "bitrate": 2_000_000,
                "pattern": "noise",
                "keyframe_interval": 60,
                "substream": substream,
                "substream_probe": 30.0,
                "idle_stop": 5.0,
            },
            "webrtc": {"host_networks": ["127.0.0.1/32", ns.network]},
        },
    )
    env = {} if paced else {"PEERCAM_BENCH_NO_PACING": "1"}
    daemon = DaemonProcess(config, tmp / f"daemon-{name}", env=env)
    daemon.start()
    fast = Viewer(broker.url, device="bench", viewer_id="fast")
    slow_proc = None
    try:
        await daemon.wait_online()
        await fast.connect()
        watch = await fast.watch(timeout=30, quality="auto")
        await watch.wait_frames(30, timeout=30)
        argv = [
            sys.executable,
            "-m",
            "tests.quality_viewer",
            "--broker",
            f"mqtt://{ns.host_ip}:{port}",
            "--device",
            "bench",
            "--network",
            ns.network,
            "--seconds",
            str(seconds + 5),
        ]
        with count_sent(ns):
            c0 = counters(ns)
            cpu0, t0 = cpu_seconds(daemon.pid), time.monotonic()
            fast0, fast_rx0, fast_kf0 = watch.frames, rx_bytes(watch), len(watch.keyframes)
            slow_proc = await asyncio.create_subprocess_exec(
                *ns.command(argv),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                cwd=ROOT,
            )
            assert slow_proc.stdout is not None
            reports: list[dict[str, Any]] = []
            c_mid: dict[str, int] | None = None
            t_mid = 0.0
            async with asyncio.timeout(seconds + 30):
                while True:
                    line = await slow_proc.stdout.readline()
                    if not line:
                        break
                    report = json.loads(line)
                    if "t" in report:
                        reports.append(report)
                        if c_mid is None and report["t"] >= seconds / 2:
                            c_mid, t_mid = counters(ns), time.monotonic()
                        if report["t"] >= seconds:
                            break
            wall = time.monotonic() - t0
            c1 = counters(ns)
            t1 = time.monotonic()
            assert c_mid is not None
            cpu = cpu_seconds(daemon.pid) - cpu0
            fast_frames = watch.frames - fast0
            fast_rx = rx_bytes(watch) - fast_rx0
            fast_kf = len(watch.keyframes) - fast_kf0
    finally:
        if slow_proc is not None and slow_proc.returncode is None:
            slow_proc.kill()
            await slow_proc.wait()
        with contextlib.suppress(Exception):
            await fast.close()
        if daemon.running:
            await daemon.terminate()
        broker.stop()
    last, mid = reports[-1], next(r for r in reports if r["t"] >= reports[-1]["t"] / 2)
    span = last["t"] - reports[0]["t"]
    switched = next((r["t"] for r in reports if r.get("stream") == "sub"), None)
    first_sub = next((r["t"] for r in reports if r["sizes"].get("640x360")), None)
    slow_sent = c1["sent"] - c0["sent"]
    slow_rx = c1["received"] - c0["received"]
    return {
        "case": name,
        "substream": substream,
        "paced": paced,
        "seconds": round(wall, 1),
        "slow_fps": round(last["frames"] / span, 1),
        "slow_fps_last_half": round((last["frames"] - mid["frames"]) / (last["t"] - mid["t"]), 1),
        "slow_sizes": last["sizes"],
        "slow_switched_at_s": switched,
        "slow_first_substream_frame_at_s": first_sub,
        "fast_fps": round(fast_frames / wall, 1),
        "fast_kbps": round(fast_rx * 8 / wall / 1000),
        "fast_idr_per_s": round(fast_kf / wall, 2),
        "slow_link_sent_kbps": round(slow_sent * 8 / wall / 1000),
        "slow_link_received_kbps": round(slow_rx * 8 / wall / 1000),
        "slow_link_sent_kbps_last_half": round(
            (c1["sent"] - c_mid["sent"]) * 8 / (t1 - t_mid) / 1000
        ),
        "slow_link_received_kbps_last_half": round(
            (c1["received"] - c_mid["received"]) * 8 / (t1 - t_mid) / 1000
        ),
        "upload_over_received": round((slow_sent + fast_rx) / max(1, slow_rx + fast_rx), 2),
        "daemon_cpu_percent": round(100 * cpu / wall, 1),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    why = available()
    if why is not None:
        raise SystemExit(f"bench.substream: {why}")
    import tempfile

    rows = []
    with (
        tempfile.TemporaryDirectory(prefix="peercam-bench-sub-") as tmp,
        throttled_namespace(rate=args.rate, burst="32kbit", latency="200ms") as ns,
    ):
        cases = [c for c in CASES if c[0] in args.cases.split(",")]
        for name, substream, paced in cases:
            row = await run_case(name, Path(tmp), ns, args.seconds, substream, paced)
            rows.append(row)
            print(json.dumps(row), flush=True)
    result = {"machine": machine_info(), "shaping": f"tbf {args.rate}", "rows": rows}
    return result


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", default="600kbit")
    parser.add_argument("--cases", default="before,after", help="before,substream-unpaced,after")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench.substream needs root (network namespaces, tc, iptables)")
    result = run_bench(main(args))
    path = write_result("substream", result, args.out)
    print(f"written {path}")


if __name__ == "__main__":
    cli()
