# ruff: noqa: F821, F722, ASYNC220, ASYNC240
# dbus-next reads D-Bus signatures from string annotations: no "from __future__ import annotations".
"""A private D-Bus session bus and an ``org.freedesktop.Notifications`` server on it.

Chromium on Linux shows web notifications through this D-Bus service; a
test that runs its own bus (``dbus-daemon`` with a minimal config) and
its own server sees every notification (summary = title, the actions) and
can click one: emitting ``ActionInvoked(id, key)`` makes Chromium fire a
real ``notificationclick`` in the service worker.  Nothing touches the
machine's own session bus.
"""

import asyncio
import contextlib
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbus_next import Variant
from dbus_next.aio import MessageBus
from dbus_next.service import ServiceInterface, method, signal

CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={path}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class Shown:
    id: int
    app: str
    summary: str
    body: str
    actions: list[str]
    hints: dict[str, Any] = field(default_factory=dict)

    def key_of(self, label: str) -> str:
        """The action key Chromium gave the button labelled ``label``."""
        pairs = dict(zip(self.actions[1::2], self.actions[0::2], strict=False))
        return pairs[label]


class NotificationServer(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: list[Shown] = []
        self.closed: list[int] = []
        self._next = 1

    @method()
    def GetCapabilities(self) -> "as":
        return ["actions", "body", "body-markup", "body-hyperlinks", "icon-static", "persistence"]

    @method()
    def Notify(
        self,
        app_name: "s",
        replaces_id: "u",
        app_icon: "s",
        summary: "s",
        body: "s",
        actions: "as",
        hints: "a{sv}",
        expire_timeout: "i",
    ) -> "u":
        ident = replaces_id or self._next
        self._next += 1
        plain = {k: v.value if isinstance(v, Variant) else v for k, v in hints.items()}
        self.shown.append(Shown(ident, app_name, summary, body, list(actions), plain))
        return ident

    @method()
    def CloseNotification(self, ident: "u") -> None:
        self.closed.append(ident)
        self.NotificationClosed(ident, 3)

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["peercam-test", "peercam", "1.0", "1.2"]

    @signal()
    def ActionInvoked(self, ident: int, key: str) -> "us":
        return [ident, key]

    @signal()
    def NotificationClosed(self, ident: int, reason: int) -> "uu":
        return [ident, reason]


@contextlib.asynccontextmanager
async def private_notifications(workdir: Path):
    """(bus address, NotificationServer) on a private session bus; torn down afterwards."""
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        raise FileNotFoundError("dbus-daemon is not installed (Debian: apt-get install dbus)")
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bus"
    config = workdir / "session.conf"
    config.write_text(CONFIG.format(path=path), encoding="utf-8")
    proc = subprocess.Popen(
        [daemon, f"--config-file={config}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 10)
        address = line.decode().strip()
        assert address.startswith("unix:"), f"dbus-daemon printed {line!r}"
        bus = await MessageBus(bus_address=address).connect()
        server = NotificationServer()
        bus.export("/org/freedesktop/Notifications", server)
        await bus.request_name("org.freedesktop.Notifications")
        try:
            yield address, server
        finally:
            bus.disconnect()
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
