"""Shared set-up for benchmarks: a real Mosquitto, the daemon as a subprocess, viewers.

Benchmarks print figures; they never assert wall-clock limits (these
machines are shared and noisy: quote medians, and ratios where there is a
baseline).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

from tests.daemon_proc import DaemonProcess, StatusWatcher, default_config, merge_config
from tests.mosquitto import MosquittoBroker, free_port

T = TypeVar("T")

RESULTS = Path(__file__).parent / "results"

#: What ``--server`` may name: peercam's daemon, or the per-viewer-encode baseline
#: (``bench/baseline_server.py``) with aiortc's stock encoder or peercam's x264 settings.
SERVERS = ("peercam", "baseline-aiortc", "baseline-x264-same")

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def machine_info() -> dict[str, Any]:
    """The machine and the versions that matter, for the results files."""
    versions = {}
    for dist in ("aiortc", "av", "aiomqtt", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    chromium = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        chromium = subprocess.run(
            ["/usr/bin/chromium", "--version"], capture_output=True, text=True, timeout=20
        ).stdout.strip()
    load = os.getloadavg()
    return {
        "cpu": machine().split(",")[0],
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "chromium": chromium,
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    """median / p95 / min / max / n of a sample, for the JSON results."""
    if not values:
        return {"median": None, "p95": None, "min": None, "max": None, "n": 0}
    return {
        "median": round(statistics.median(values), 3),
        "p95": round(percentile(values, 0.95), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


def write_result(name: str, data: dict[str, Any], path: str | None = None) -> Path:
    """Write ``data`` (plus the machine) as JSON to ``bench/results/<name>.json`` (or ``path``)."""
    target = Path(path) if path else RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    body = {"benchmark": name, "machine": machine_info(), **data}
    target.write_text(json.dumps(body, indent=1) + "\n", encoding="utf-8")
    return target


def summary(values: Sequence[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)
    p95 = percentile(ordered, 0.95)
    return (
        f"median {statistics.median(ordered):.1f}, p95 {p95:.1f}, "
        f"min {ordered[0]:.1f}, max {ordered[-1]:.1f} (n={len(ordered)})"
    )


@contextlib.asynccontextmanager
async def device(overrides: dict[str, Any] | None = None) -> AsyncIterator[DaemonProcess]:
    """A real Mosquitto and one daemon on loopback, torn down afterwards."""
    with tempfile.TemporaryDirectory(prefix="peercam-bench-") as tmp:
        broker = MosquittoBroker(Path(tmp) / "mosquitto")
        broker.start()
        daemon = DaemonProcess(
            merge_config(default_config(broker.url, device="bench"), overrides),
            Path(tmp) / "daemon",
        )
        try:
            daemon.start()
            await daemon.wait_online()
            yield daemon
        finally:
            if daemon.running:
                await daemon.terminate()
            broker.stop()


# --------------------------------------------------------------------------
# Any server (peercam or the baseline) behind a broker with TCP and WebSockets
# --------------------------------------------------------------------------


@dataclass
class Server:
    """A running server under test: its process, broker URLs and device id."""

    kind: str
    pid: int
    broker_url: str
    ws_url: str
    device: str
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_bench(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, with SIGTERM cancelling it so servers and brokers are torn down."""

    async def guarded() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await main

    return asyncio.run(guarded())


def _spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=Path(__file__).parent.parent,
            start_new_session=True,
        )


async def _wait_online(broker_url: str, topic: str, timeout: float, alive: Any) -> None:
    async with StatusWatcher(broker_url, topic) as watcher:
        await watcher.wait_for(lambda s: s.get("state") == "online", timeout, alive=alive)


@contextlib.asynccontextmanager
async def serve(
    kind: str,
    *,
    size: tuple[int, int] = (1280, 720),
    fps: int = 30,
    bitrate: int = 2_000_000,
    pattern: str = "noise",
    max_viewers: int = 16,
    idr_on_join: bool = True,
    idle_stop: float = 60.0,
    host_networks: Sequence[str] = ("127.0.0.1/32",),
    broker_listen: Sequence[str] = (),
    broker_nodelay: bool = False,
) -> AsyncIterator[Server]:
    """Mosquitto (TCP + WebSockets on 127.0.0.1) and one server of ``kind`` (see SERVERS).

    ``broker_listen`` adds TCP listeners on other addresses (``"10.x.y.z"``),
    for viewers in a network namespace the benchmark made.
    """
    if kind not in SERVERS:
        raise ValueError(f"unknown server {kind!r}; allowed: {', '.join(SERVERS)}")
    width, height = size
    with tempfile.TemporaryDirectory(prefix="peercam-bench-") as tmp:
        ws_port = free_port()
        port_for_ns = free_port()
        extra = [f"listener {ws_port} 127.0.0.1", "protocol websockets"]
        if broker_nodelay:  # Mosquitto's default is false: Nagle on its client sockets
            extra.insert(0, "set_tcp_nodelay true")
        for address in broker_listen:
            extra += [f"listener {port_for_ns} {address}", "protocol mqtt"]
        broker = MosquittoBroker(Path(tmp) / "mosquitto", extra_config="\n".join(extra))
        broker.start()
        ws_url = f"ws://127.0.0.1:{ws_port}"
        info = {"broker_port_for_namespaces": port_for_ns}
        try:
            if kind == "peercam":
                daemon = DaemonProcess(
                    merge_config(
                        default_config(broker.url, device="bench"),
                        {
                            "camera": {
                                "width": width,
                                "height": height,
                                "fps": fps,
                                "bitrate": bitrate,
                                "pattern": pattern,
                                "idle_stop": idle_stop,
                            },
                            "webrtc": {
                                "max_viewers": max_viewers,
                                "max_sessions_per_viewer": 16,
                                "host_networks": list(host_networks),
                            },
                        },
                    ),
                    Path(tmp) / "daemon",
                )
                with _env(PEERCAM_BENCH_NO_IDR_ON_JOIN="0" if idr_on_join else "1"):
                    daemon.start()
                try:
                    await daemon.wait_online()
                    yield Server(
                        kind, daemon.pid, broker.url, ws_url, "bench", daemon.log_path, info
                    )
                finally:
                    if daemon.running:
                        await daemon.terminate()
            else:
                log_path = Path(tmp) / "baseline.log"
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.baseline_server",
                    "--broker",
                    broker.url,
                    "--device",
                    "bench",
                    "--size",
                    f"{width}x{height}",
                    "--fps",
                    str(fps),
                    "--bitrate",
                    str(bitrate),
                    "--pattern",
                    pattern,
                    "--encoder",
                    kind.removeprefix("baseline-"),
                ]
                for net in host_networks:
                    cmd += ["--host-network", net]
                proc = _spawn(cmd, log_path)

                def exited() -> str | None:
                    if proc.poll() is not None:
                        return f"baseline exited {proc.returncode}: {log_path.read_text()}"
                    return None

                try:
                    await _wait_online(broker.url, "peercam/bench/status", 30, exited)
                    yield Server(kind, proc.pid, broker.url, ws_url, "bench", log_path, info)
                finally:
                    if proc.poll() is None:
                        proc.send_signal(signal.SIGTERM)
                        for _ in range(100):
                            if proc.poll() is not None:
                                break
                            await asyncio.sleep(0.1)
                        else:
                            proc.kill()
                            proc.wait(5)
        finally:
            broker.stop()
