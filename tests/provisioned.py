"""A provisioned site for tests: a registry made with ``peercam provision``, a real Mosquitto
started with the files ``export`` generated, and helpers to act as any enrolled party.

Everything listens on 127.0.0.1.  Mosquitto runs with the generated
``peercam.conf`` verbatim (password_file, acl_file, TLS/WSS listeners bound to
127.0.0.1) appended to the test harness's config, which adds logging and one
plain listener on ``broker.port`` that the Python viewers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import time
import tomllib
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import aiomqtt

from peercam.provisioning.cli import main as provision_main
from tests.mosquitto import MosquittoBroker, free_port, port_accepts

#: Small pictures for the daemons under test (the bundle asks for the Pi's defaults).
TEST_CAMERA = {
    "source": "test-pattern",
    "width": 320,
    "height": 240,
    "fps": 30,
    "bitrate": 500_000,
    "keyframe_interval": 60,
}


class ProvisionFailed(AssertionError):
    pass


class Site:
    """One registry folder and the broker built from it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.registry = root / "registry"
        self.port = free_port()  # the harness's plain listener (viewers, devices over mqtt://)
        self.mqtts_port = free_port()
        self.wss_port = free_port()
        self.mqtt_port = free_port()  # generated plain listener (only with init --plain)
        self.passwords: dict[str, str] = {}
        self.broker: MosquittoBroker | None = None

    # --- the CLI ---

    def provision(self, *args: str, expect: int = 0) -> str:
        """Run ``peercam provision --registry DIR ARGS``; returns stdout (fails on another rc)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = provision_main(["--registry", str(self.registry), *args])
        if rc != expect:
            raise ProvisionFailed(
                f"provision {' '.join(args)}: rc {rc} (wanted {expect})\n"
                f"{out.getvalue()}{err.getvalue()}"
            )
        return out.getvalue() + err.getvalue()

    def init(self, *extra: str) -> None:
        self.provision(
            "init",
            "--broker",
            f"mqtt://127.0.0.1:{self.port}",
            "--listen-address",
            "127.0.0.1",
            "--mqtt-port",
            str(self.mqtt_port),
            "--mqtts-port",
            str(self.mqtts_port),
            "--wss-port",
            str(self.wss_port),
            "--ws-port",
            str(free_port()),
            "--mosquitto-dir",
            str(self.registry / "mosquitto"),
            "--install-dir",
            str(self.registry / "devices" / "{device}"),
            *extra,
        )

    def add_device(self, device: str, *extra: str) -> None:
        self.provision(
            "device",
            "add",
            device,
            "--name",
            device.title(),
            "--camera",
            "test-pattern",
            "--host-network",
            "127.0.0.1/32",
            *extra,
        )
        self.passwords[device] = self.bundle_file(device, "mqtt-password").read_text().strip()

    def add_viewer(self, viewer: str, *devices: str) -> str:
        args = ["viewer", "add", viewer]
        for device in devices:
            args += ["--device", device]
        out = self.provision(*args)
        match = re.search(r"^password: (\S+)$", out, re.MULTILINE)
        assert match, out
        self.passwords[viewer] = match.group(1)
        return match.group(1)

    def export(self) -> str:
        return self.provision("export", "--dashboard")

    # --- files ---

    def bundle_dir(self, device: str) -> Path:
        return self.registry / "devices" / device

    def bundle_file(self, device: str, name: str) -> Path:
        return self.bundle_dir(device) / name

    def bundle_config(self, device: str, **overrides: dict[str, Any]) -> dict[str, Any]:
        """The device's generated peercam.toml as dicts, with the test camera (and overrides)."""
        data = tomllib.loads(self.bundle_file(device, "peercam.toml").read_text())
        data["camera"] = dict(TEST_CAMERA)
        for section, values in overrides.items():
            data[section] = {**data.get(section, {}), **values}
        return data

    @property
    def ca_file(self) -> Path:
        return self.registry / "tls" / "ca.crt"

    # --- the broker ---

    def start_broker(self) -> MosquittoBroker:
        conf = (self.registry / "mosquitto" / "peercam.conf").read_text()
        self.broker = MosquittoBroker(
            self.root / "mosquitto",
            port=self.port,
            allow_anonymous=False,
            log_all=True,
            extra_config=conf,
        )
        self.broker.start()
        # The harness waits for its own port; the generated listeners open just after it.
        ports = re.findall(r"^listener (\d+)", conf, re.MULTILINE)
        deadline = time.monotonic() + 10
        for port in map(int, ports):
            while not port_accepts(port):
                if time.monotonic() > deadline:
                    raise AssertionError(f"listener {port} never opened:\n{self.broker.log_text()}")
                time.sleep(0.02)
        return self.broker

    def reload_broker(self) -> None:
        assert self.broker is not None
        self.broker.reload()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def denied_publishes(self, user_client: str, topic: str) -> int:
        """How often the broker logged a denied PUBLISH from ``user_client`` on ``topic``."""
        assert self.broker is not None
        pattern = re.compile(
            rf"Denied PUBLISH from {re.escape(user_client)} \([^)]*, '{re.escape(topic)}'"
        )
        return len(pattern.findall(self.broker.log_text()))


class Spy:
    """An MQTT client acting as ``username`` that records everything it receives."""

    def __init__(
        self,
        site: Site,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        port: int | None = None,
    ) -> None:
        self.site = site
        self.username = username
        self.password = password
        self.client_id = client_id or f"spy-{username}-{uuid.uuid4().hex[:8]}"
        self.port = port or site.port
        self.received: list[tuple[str, bytes, bool]] = []
        self.client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None
        self.disconnected: str | None = None

    async def __aenter__(self) -> Spy:
        self.client = aiomqtt.Client(
            "127.0.0.1",
            self.port,
            username=self.username,
            password=self.password,
            identifier=self.client_id,
            timeout=10,
        )
        async with asyncio.timeout(10):
            await self.client.__aenter__()
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.client is not None
        try:
            async for message in self.client.messages:
                payload = message.payload
                data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
                self.received.append((str(message.topic), bytes(data), bool(message.retain)))
        except aiomqtt.MqttError as exc:
            self.disconnected = str(exc)

    async def subscribe(self, *topics: str) -> None:
        assert self.client is not None
        for topic in topics:
            await self.client.subscribe(topic, qos=1)

    async def publish(self, topic: str, message: dict[str, Any] | bytes, **kw: Any) -> None:
        assert self.client is not None
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        await self.client.publish(topic, payload, qos=1, **kw)

    def topics(self) -> list[str]:
        return [topic for topic, _, _ in self.received]

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.client is not None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(5):
                    await self.client.__aexit__(None, None, None)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
