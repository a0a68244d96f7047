"""systemd's notify protocol (``Type=notify``, ``WatchdogSec=``), in pure Python.

systemd passes ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract
namespace) and, with a watchdog, ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``).
The daemon sends one datagram per state change: ``READY=1`` once it serves,
``STATUS=...`` lines that ``systemctl status`` shows, ``WATCHDOG=1`` at least
every ``WATCHDOG_USEC`` (we pet at half of it), ``STOPPING=1`` on shutdown.
Outside systemd there is no socket and every call does nothing.

The pets come from a task on the daemon's event loop: a loop that hangs
stops petting, and systemd kills and restarts the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger("peercam.sdnotify")


class Notifier:
    """Sends notifications to systemd (or nowhere, when not started by it)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address if address.startswith(("/", "\0")) else ""
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._warned = False

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *fields: str) -> bool:
        """Send ``fields`` (``"READY=1"``, ``"STATUS=..."``) as one datagram; False if not sent."""
        if not self._address:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._socket is None:
                kind = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                self._socket = socket.socket(socket.AF_UNIX, kind)
                self._socket.setblocking(False)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._warned:  # once: a broken socket must not flood the journal
                log.warning("cannot notify systemd at %r: %s", self._address, exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        return self.notify(f"STATUS={status}")

    def stopping(self, status: str = "shutting down") -> bool:
        return self.notify("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    async def pet_watchdog(self) -> None:
        """Pet at half the watchdog interval until cancelled (returns at once without one)."""
        if not self.enabled or self.watchdog_interval is None:
            return
        period = self.watchdog_interval / 2
        log.info("systemd watchdog: %.1f s, petting every %.1f s", self.watchdog_interval, period)
        while True:
            self.watchdog()
            await asyncio.sleep(period)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds from ``WATCHDOG_USEC``, when the watchdog is meant for this process."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # set for another process (e.g. a wrapper that exec'd us differently)
    return int(usec) / 1_000_000


#: Test-only: with this variable set to N seconds, SIGUSR2 blocks the event loop for N s.
TEST_BLOCK_ENV = "PEERCAM_TEST_BLOCK_LOOP"


def install_test_loop_blocker(loop: asyncio.AbstractEventLoop) -> bool:
    """TEST ONLY: when ``PEERCAM_TEST_BLOCK_LOOP=N`` is set, SIGUSR2 hangs the loop N seconds.

    Lets tests prove that a hung event loop stops the watchdog pets.  Never set
    it in production: anyone allowed to signal the daemon could stall it.
    """
    import signal
    import time

    value = os.environ.get(TEST_BLOCK_ENV, "")
    try:
        seconds = float(value)
    except ValueError:
        return False
    if not 0 < seconds <= 60:
        return False

    def block() -> None:
        log.warning("%s: blocking the event loop for %.1f s (test only)", TEST_BLOCK_ENV, seconds)
        time.sleep(seconds)  # deliberately blocking: that is the point
        log.warning("%s: event loop unblocked", TEST_BLOCK_ENV)

    loop.add_signal_handler(signal.SIGUSR2, block)
    log.warning("%s is set: SIGUSR2 blocks the event loop (test only)", TEST_BLOCK_ENV)
    return True
