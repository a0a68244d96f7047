"""A viewer in its own process, so a test can freeze (SIGSTOP) or kill (SIGKILL) it.

``python -m tests.viewer_proc mqtt://127.0.0.1:PORT DEVICE VIEWER [--keepalive S]``
watches one session, prints ``WATCHING <session>`` once frames decode, then
keeps the session (and its MQTT connection) open until it is signalled.
``ViewerProcess`` starts it and waits (bounded) for that line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


async def _main(args: argparse.Namespace) -> None:
    from tests.viewer import Viewer

    viewer = Viewer(
        args.broker, device=args.device, viewer_id=args.viewer, keepalive=args.keepalive
    )
    await viewer.connect()
    watch = await viewer.watch(timeout=20)
    await watch.wait_frames(10, 20)
    print(f"WATCHING {watch.id}", flush=True)
    await asyncio.Event().wait()  # until a signal ends the process


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("broker")
    parser.add_argument("device")
    parser.add_argument("viewer")
    parser.add_argument("--keepalive", type=int, default=30)
    asyncio.run(_main(parser.parse_args()))


class ViewerProcess:
    """``tests.viewer_proc`` as a subprocess; its output goes to ``log_path``."""

    def __init__(
        self, broker_url: str, device: str, viewer: str, workdir: Path, keepalive: int = 30
    ) -> None:
        self.viewer = viewer
        self.log_path = workdir / f"viewer-{viewer}.log"
        workdir.mkdir(parents=True, exist_ok=True)
        self.command = [
            sys.executable,
            "-m",
            "tests.viewer_proc",
            broker_url,
            device,
            viewer,
            "--keepalive",
            str(keepalive),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: str | None = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )

    async def start(self, timeout: float = 30.0) -> str:
        """Spawn and wait until it decodes video; returns its session id."""
        self.spawn()
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if line.startswith("WATCHING "):
                    self.session = line.split()[1]
                    return self.session
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"viewer process {self.viewer} never watched:\n{self.log_text()}"
                )
            await asyncio.sleep(0.05)

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def kill(self) -> None:
        if self.proc is None:
            return
        self.signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


if __name__ == "__main__":
    main()
