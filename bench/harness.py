"""Shared set-up for benchmarks: a real Mosquitto, the daemon as a subprocess, viewers.

Benchmarks print figures; they never assert wall-clock limits (these
machines are shared and noisy: quote medians, and ratios where there is a
baseline).
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from tests.daemon_proc import DaemonProcess, default_config, merge_config
from tests.mosquitto import MosquittoBroker

CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summary(values: Sequence[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
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
