"""systemd's notify protocol: the Notifier alone, then the real daemon under a fake systemd.

The "systemd" here is a real AF_UNIX datagram socket passed as NOTIFY_SOCKET,
exactly what systemd gives a ``Type=notify`` service; ``WATCHDOG_USEC`` is
set as systemd sets it for ``WatchdogSec=``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import secrets
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peercam.sdnotify import Notifier, _watchdog_interval, install_test_loop_blocker
from tests.daemon_proc import DaemonProcess, attach_log, default_config
from tests.mosquitto import MosquittoBroker, free_port


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: remembers every datagram with its arrival time."""

    def __init__(self, address: str, sock: socket.socket) -> None:
        self.address = address  # what goes into NOTIFY_SOCKET
        self.sock = sock
        self.messages: list[tuple[float, dict[str, str]]] = []

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(4096)
            except BlockingIOError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def times(self, key: str, value: str = "1") -> list[float]:
        self.poll()
        return [t for t, fields in self.messages if fields.get(key) == value]

    def statuses(self) -> list[str]:
        self.poll()
        return [fields["STATUS"] for _, fields in self.messages if "STATUS" in fields]

    async def wait_for(self, key: str, value: str = "1", *, count: int = 1, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.times(key, value)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no {count}× {key}={value} within {timeout:.0f} s; got {self.messages[-10:]}"
                )
            await asyncio.sleep(0.05)


@pytest.fixture(params=["path", "abstract"])
def fake_systemd(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FakeSystemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = tmp_path / "notify.sock"
        sock.bind(str(path))
        address = str(path)
    else:
        name = f"peercam-test-{secrets.token_hex(6)}"
        sock.bind("\0" + name)
        address = "@" + name
    sock.setblocking(False)
    try:
        yield FakeSystemd(address, sock)
    finally:
        sock.close()


# --- the Notifier --------------------------------------------------------------------------


def test_notifier_sends_datagrams_to_path_and_abstract_sockets(fake_systemd: FakeSystemd) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": fake_systemd.address})
    assert notifier.enabled
    assert notifier.ready("online: frontdoor")
    assert notifier.watchdog()
    assert notifier.stopping()
    notifier.close()
    fake_systemd.poll()
    got = [fields for _, fields in fake_systemd.messages]
    assert got == [
        {"READY": "1", "STATUS": "online: frontdoor"},
        {"WATCHDOG": "1"},
        {"STOPPING": "1", "STATUS": "shutting down"},
    ]


def test_notifier_without_systemd_does_nothing() -> None:
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/path"}):
        notifier = Notifier(env)
        assert not notifier.enabled
        assert not notifier.ready("x")
        assert not notifier.watchdog()


def test_notifier_survives_a_vanished_socket(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not notifier.watchdog()
    assert not notifier.watchdog()
    warnings = [r for r in caplog.records if "cannot notify systemd" in r.getMessage()]
    assert len(warnings) == 1  # said once, not on every pet


def test_watchdog_interval_from_environment() -> None:
    pid = str(os.getpid())
    assert _watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert _watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": pid}) == 2.0
    assert _watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert _watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert _watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert _watchdog_interval({}) is None


async def test_pet_watchdog_pets_at_half_the_interval(fake_systemd: FakeSystemd) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": fake_systemd.address, "WATCHDOG_USEC": "200000"})
    task = asyncio.create_task(notifier.pet_watchdog())
    try:
        await fake_systemd.wait_for("WATCHDOG", count=4, timeout=10)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        notifier.close()


# --- the real daemon -----------------------------------------------------------------------

BLOCK_SECONDS = 4.0
WATCHDOG_USEC = 1_000_000  # pets every 0.5 s


@pytest.mark.parametrize("fake_systemd", ["abstract"], indirect=True)
async def test_daemon_ready_after_broker_watchdog_and_stopping(
    fake_systemd: FakeSystemd, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """READY only once the broker is reached; pets repeat; a blocked loop stops them."""
    broker = MosquittoBroker(tmp_path / "mosquitto", port=free_port())
    attach_log(request.node, "mosquitto log", broker.log_text)
    daemon = DaemonProcess(
        default_config(broker.url),
        tmp_path / "daemon",
        env={
            "NOTIFY_SOCKET": fake_systemd.address,
            "WATCHDOG_USEC": str(WATCHDOG_USEC),
            "PEERCAM_TEST_BLOCK_LOOP": str(BLOCK_SECONDS),
        },
    )
    attach_log(request.node, "daemon log", daemon.log_text)
    daemon.start()  # the broker is not running yet
    try:
        # Pets start with the event loop, before the broker is reached ...
        await fake_systemd.wait_for("WATCHDOG", count=3, timeout=30)
        # ... but READY waits for it.
        assert fake_systemd.times("READY") == [], daemon.log_text()
        assert any(s.startswith("connecting to mqtt://") for s in fake_systemd.statuses())
        broker.start()
        await fake_systemd.wait_for("READY", timeout=40)
        ready = [f for _, f in fake_systemd.messages if f.get("READY") == "1"]
        assert ready[0]["STATUS"] == f"online: device 'frontdoor' on {broker.url}"
        await daemon.wait_online(20)

        # Pets keep coming after READY.
        after_ready = len(fake_systemd.times("WATCHDOG"))
        await fake_systemd.wait_for("WATCHDOG", count=after_ready + 3, timeout=20)

        # Block the event loop: pets stop for as long as it is blocked, then resume.
        blocked_at = time.monotonic()
        daemon.signal(signal.SIGUSR2)
        await asyncio.sleep(BLOCK_SECONDS + 1.0)
        before = len(fake_systemd.times("WATCHDOG"))
        await fake_systemd.wait_for("WATCHDOG", count=before + 2, timeout=20)
        pets = fake_systemd.times("WATCHDOG")
        gaps = [b - a for a, b in itertools.pairwise(pets) if b > blocked_at]
        assert max(gaps) >= 0.75 * BLOCK_SECONDS, (gaps, daemon.log_text())
        assert "blocking the event loop" in daemon.log_text()

        # Broker gone: STATUS says so; back: STATUS says online again (no second READY).
        broker.stop()
        deadline = time.monotonic() + 30
        while not any(s.startswith("lost the broker") for s in fake_systemd.statuses()):
            assert time.monotonic() < deadline, fake_systemd.statuses()
            await asyncio.sleep(0.1)
        broker.start()
        await daemon.wait_online(40)
        assert len(fake_systemd.times("READY")) == 1

        rc = await daemon.terminate()
        assert rc == 0, daemon.log_text()
        assert fake_systemd.times("STOPPING"), fake_systemd.messages[-5:]
        daemon.assert_no_traceback()
    finally:
        if daemon.running:
            daemon.kill()
        broker.stop()


async def test_loop_blocker_needs_the_test_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    for value in (None, "", "forever", "0", "3600"):
        if value is None:
            monkeypatch.delenv("PEERCAM_TEST_BLOCK_LOOP", raising=False)
        else:
            monkeypatch.setenv("PEERCAM_TEST_BLOCK_LOOP", value)
        assert not install_test_loop_blocker(loop), value
    monkeypatch.setenv("PEERCAM_TEST_BLOCK_LOOP", "0.1")
    try:
        assert install_test_loop_blocker(loop)
    finally:
        loop.remove_signal_handler(signal.SIGUSR2)
