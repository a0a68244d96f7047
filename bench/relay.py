"""Device CPU and upload with 1, 5, 10, 20 viewers: through Janus vs peer-to-peer.

    python -m bench.relay [--viewers 1,5,10,20] [--seconds 10] [--first-frames 10]

Everything runs in the NAT lab's network namespaces (tests/netlab.py,
tests/janus_lab.py; root needed): the daemon behind NAT A (640x360 at 30
fps, ~1 Mbit/s noise pattern, encoded once by libx264 in the daemon, so the
encoder is counted), Janus (Debian's) on the lab's "internet", viewers
behind NAT B in one process that does not decode (``bench.nodecode``).

- CPU: the daemon's user+system seconds per wall second (1.0 = one core)
  over the window; Janus's likewise.
- Upload: bytes/s the device namespace's interface sent in the window (all
  of it: media, RTCP, MQTT).
- Subscribe → first frame through Janus: ``tests/janus_viewer.py`` (decoding),
  from its Janus join to the first decoded frame; ``--first-frames`` times
  with the device already publishing (``publish = "always"``), as many
  "cold" (on demand: the publish starts with the viewer's hello; hello →
  first frame).

Writes bench/results/relay.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import cpu_seconds, machine, write_result
from tests.daemon_proc import merge_config
from tests.janus_lab import JANUS_URL, JanusServer, add_sfu_namespace
from tests.netlab import (
    ROOT,
    STUN,
    VIEWER_NET,
    LabDaemon,
    Nat,
    NetLab,
    lab_daemon_config,
    remove_stale,
    run_in_namespace,
)

CAMERA = {"width": 640, "height": 360, "fps": 30, "bitrate": 1_000_000, "pattern": "noise"}


def tx_bytes(lab: NetLab) -> int:
    return int(lab.device.run("cat", "/sys/class/net/eth0/statistics/tx_bytes").strip())


async def start_daemon(lab: NetLab, workdir: Path, relay: dict[str, Any] | None) -> LabDaemon:
    config = lab_daemon_config(
        lab,
        ice_servers=[STUN],
        secret_file=None,
        webrtc={"max_viewers": 24, "max_handshakes": 24, "connect_timeout": 30.0},
    )
    config = merge_config(config, {"camera": CAMERA})
    if relay is not None:
        config["relay"] = {"mode": "janus", "url": JANUS_URL, "room": 5151, **relay}
    await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
    daemon = LabDaemon(lab, config, workdir)
    daemon.start()
    await daemon.wait_online(30)
    return daemon


async def measure(
    lab: NetLab, daemon: LabDaemon, janus: JanusServer | None, mode: str, n: int, seconds: float
) -> dict[str, Any]:
    assert lab.broker is not None
    argv = [
        sys.executable, "-m", "bench.relay_viewers", "--broker", lab.broker.url,
        "--host-network", VIEWER_NET, "--mode", mode, "--n", str(n),
        "--seconds", str(seconds),
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        *lab.viewer.exec_prefix(),
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=lab.env(),
        cwd=ROOT,
    )
    assert proc.stdout is not None
    samples: dict[str, tuple[float, float, float, int]] = {}
    janus_pid = janus.process.proc.pid if janus and janus.process else None
    lines: list[str] = []
    async with asyncio.timeout(240):
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            lines.append(line)
            if line in ("WINDOW-START", "WINDOW-END"):
                samples[line] = (
                    time.monotonic(),
                    cpu_seconds(daemon.pid),
                    cpu_seconds(janus_pid) if janus_pid else 0.0,
                    tx_bytes(lab),
                )
        await proc.wait()
    if "WINDOW-END" not in samples:
        raise AssertionError("the viewers never measured:\n" + "\n".join(lines[-40:]))
    result = json.loads(lines[-1])
    (t0, c0, j0, b0), (t1, c1, j1, b1) = samples["WINDOW-START"], samples["WINDOW-END"]
    wall = t1 - t0
    row = {
        "mode": mode,
        "viewers": n,
        "device_cpu": round((c1 - c0) / wall, 4),
        "janus_cpu": round((j1 - j0) / wall, 4) if janus_pid else None,
        "upload_kbit_s": round((b1 - b0) * 8 / wall / 1000, 1),
        "fps_min": min(result["fps"]),
        "fps_median": statistics.median(result["fps"]),
    }
    print(
        f"  {mode:5s} {n:2d} viewers: device CPU {row['device_cpu']:.3f}, upload "
        f"{row['upload_kbit_s']:7.0f} kbit/s, viewer fps min {row['fps_min']}"
        + (f", Janus CPU {row['janus_cpu']:.3f}" if janus_pid else ""),
        flush=True,
    )
    return row


async def first_frames(lab: NetLab, count: int) -> list[dict[str, Any]]:
    assert lab.broker is not None
    argv = [
        sys.executable, "-m", "tests.janus_viewer", "--broker", lab.broker.url,
        "--host-network", VIEWER_NET, "--frames", "1",
    ]  # fmt: skip
    out = []
    for _ in range(count):
        _, text = await run_in_namespace(lab.viewer, argv, env=lab.env(), timeout=90)
        events = [json.loads(x) for x in text.splitlines() if x.startswith("{")]
        summary = events[-1]
        subscribed = next((e for e in events if e.get("event") == "subscribed"), None)
        sub = (summary.get("subscriptions") or [{}])[0]
        out.append(
            {
                "ok": summary.get("ok"),
                "subscribe_to_first_frame_ms": None
                if sub.get("subscribe_to_first_frame") is None
                else round(sub["subscribe_to_first_frame"] * 1000, 1),
                "hello_to_subscribed_ms": None
                if subscribed is None
                else round(subscribed["after"] * 1000, 1),
            }
        )
        await asyncio.sleep(0.5)
    return out


def median_of(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 1) if values else None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    counts = [int(x) for x in args.viewers.split(",")]
    remove_stale()
    work = Path(tempfile.mkdtemp(prefix="peercam-bench-relay-"))
    lab = NetLab(work / "lab")
    rows: list[dict[str, Any]] = []
    firsts: dict[str, list[dict[str, Any]]] = {}
    try:
        lab.build()
        lab.set_nat("a", Nat.FULL_CONE)
        lab.set_nat("b", Nat.FULL_CONE)
        add_sfu_namespace(lab)
        lab.start_coturn("bench-secret")
        lab.start_mosquitto()
        janus = JanusServer(lab, work / "janus").start()
        print(f"relay benchmark on {machine()}", flush=True)
        for mode in ("janus", "p2p"):
            relay = {"policy": "always", "lease": 600} if mode == "janus" else None
            daemon = await start_daemon(lab, work / f"daemon-{mode}", relay)
            try:
                for n in counts:
                    rows.append(await measure(lab, daemon, janus, mode, n, args.seconds))
                    await asyncio.sleep(2)
            finally:
                await daemon.terminate()
        for label, relay in (
            ("warm", {"policy": "always", "publish": "always"}),
            ("cold", {"policy": "always", "linger": 0}),
        ):
            daemon = await start_daemon(lab, work / f"daemon-ff-{label}", relay)
            try:
                if label == "warm":
                    await daemon.wait_status(lambda s: s["relay"]["state"] == "publishing", 20)
                else:
                    await asyncio.sleep(1)
                firsts[label] = await first_frames(lab, args.first_frames)
            finally:
                await daemon.terminate()
            print(
                f"  first frame through Janus ({label}): subscribe → first frame median "
                f"{median_of(firsts[label], 'subscribe_to_first_frame_ms')} ms, hello → "
                f"subscribed median {median_of(firsts[label], 'hello_to_subscribed_ms')} ms",
                flush=True,
            )
    finally:
        lab.close()
    return {"machine": machine(), "camera": CAMERA, "rows": rows, "first_frames": firsts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--viewers", default="1,5,10,20")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--first-frames", type=int, default=10)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    path = write_result("relay", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
