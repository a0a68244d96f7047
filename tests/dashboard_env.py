"""What the dashboard tests share: a Mosquitto with passwords, an ACL and a WebSockets
listener; the dashboard served over HTTP; Chromium pages that record console errors.

The ACL follows PROTOCOL.md (and the call topics of docs/protocol-notes.md): a
device reads and writes everything under ``peercam/{device}/``; a viewer reads
``status``, ``events``, ``calls``, ``snapshot/#`` and its own ``out`` topic of
the devices it was granted, and writes only its own ``in`` topic.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiomqtt

from tests.mosquitto import MosquittoBroker, write_password_file

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
PREFIX = "peercam"

#: Chromium flags for talkback: a fake microphone (a beep) and no permission prompt.
FAKE_MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

#: users -> passwords. Devices and viewers; "mallory" may connect but sees no device.
PASSWORDS = {
    "frontdoor": "door-pw",
    "backyard": "yard-pw",
    "alice": "alice-pw",
    "bob": "bob-pw",
    "mallory": "mallory-pw",
}
#: viewer -> devices it may watch
GRANTS = {"alice": ["frontdoor", "backyard"], "bob": ["frontdoor", "backyard"], "mallory": []}
DEVICES = ("frontdoor", "backyard")


def acl_text() -> str:
    lines: list[str] = []
    for device in DEVICES:
        lines += [f"user {device}", f"topic readwrite {PREFIX}/{device}/#", ""]
    for viewer, devices in GRANTS.items():
        lines.append(f"user {viewer}")
        for device in devices:
            base = f"{PREFIX}/{device}"
            lines += [
                f"topic read {base}/status",
                f"topic read {base}/events",
                f"topic read {base}/calls",
                f"topic read {base}/snapshot/#",
                f"topic read {base}/out/{viewer}",
                f"topic write {base}/in/{viewer}",
            ]
        lines.append("")
    return "\n".join(lines)


def secure_broker(factory: Callable[..., MosquittoBroker], workdir: Path) -> MosquittoBroker:
    """Mosquitto with passwords, the ACL above and a WebSockets listener (started)."""
    workdir.mkdir(parents=True, exist_ok=True)
    passwd = write_password_file(workdir / "passwd", PASSWORDS)
    acl = workdir / "acl"
    acl.write_text(acl_text(), encoding="utf-8")
    return factory(allow_anonymous=False, password_file=passwd, acl_file=acl, websockets=True)


def device_overrides(workdir: Path, device: str) -> dict[str, Any]:
    """daemon_factory ``config`` for a device that signs in with its password."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = workdir / f"{device}.mqtt-password"
    secret.write_text(PASSWORDS[device] + "\n", encoding="utf-8")
    return {"mqtt": {"username": device, "password_file": str(secret)}}


def dashboard_url(base: str, broker: MosquittoBroker | str, viewer: str, **extra: str) -> str:
    """The dashboard with its sign-in in URL parameters (signs in at once)."""
    ws = broker if isinstance(broker, str) else broker.ws_url
    params = {
        "broker_url": ws,
        "viewer": viewer,
        "password": PASSWORDS.get(viewer, ""),
        "signin": "1",
        **extra,
    }
    return f"{base}?{urlencode(params)}"


@dataclass
class PageLog:
    """Console errors and page errors of one page (expected ones can be allowed)."""

    errors: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def unexpected(self, allowed: Iterable[str] = ()) -> list[str]:
        allowed = tuple(allowed)
        return [e for e in self.errors if not any(a in e for a in allowed)]


def watch_console(page: Any) -> PageLog:
    log = PageLog()

    def on_console(msg: Any) -> None:
        log.messages.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            log.errors.append(msg.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: log.errors.append(f"pageerror: {exc}"))
    return log


async def wait_js(page: Any, expression: str, timeout: float, what: str = "") -> Any:
    """Poll ``expression`` (a JS arrow function or expression) until truthy; return its value."""
    deadline = time.monotonic() + timeout
    value: Any = None
    while True:
        try:
            value = await page.evaluate(expression)
        except Exception as exc:  # the page may be navigating
            value = None
            last_error: str | None = str(exc)
        else:
            last_error = None
        if value:
            return value
        if time.monotonic() >= deadline:
            state = await page.evaluate(
                "() => ({view: document.body.dataset.view, state: document.body.dataset.state,"
                " sessions: window.peercam && window.peercam.sessions,"
                " signin: (document.getElementById('signin-text')||{}).textContent})"
            )
            raise AssertionError(
                f"timed out after {timeout} s waiting for {what or expression!r} "
                f"(last value {value!r}, error {last_error}); page: {state}"
            )
        await asyncio.sleep(0.2)


async def frames_of(page: Any, device: str) -> int:
    return int(
        await page.evaluate(
            "(d) => { const s = window.peercam.sessions[d]; return s ? s.stats.framesDecoded : 0; }",
            device,
        )
    )


async def wait_frames(page: Any, device: str, n: int, timeout: float) -> int:
    """Until the page decoded ``n`` more frames of ``device`` than now... from 0: at least n."""
    await wait_js(
        page,
        f"() => {{ const s = window.peercam.sessions[{json.dumps(device)}];"
        f" return s && s.state === 'live' && s.stats.framesDecoded >= {n}; }}",
        timeout,
        f"{n} frames of {device}",
    )
    return await frames_of(page, device)


async def wait_more_frames(page: Any, device: str, more: int, timeout: float) -> int:
    start = await frames_of(page, device)
    deadline = time.monotonic() + timeout
    while True:
        now = await frames_of(page, device)
        if now >= start + more:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"{device}: {now - start} of {more} new frames in {timeout} s")
        await asyncio.sleep(0.2)


class DeviceSide:
    """A Python MQTT client with a device's credentials: publishes what a device would
    (call events, call logs, snapshots) and records what viewers send to the device."""

    def __init__(self, broker: MosquittoBroker, device: str) -> None:
        self.broker = broker
        self.device = device
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._client: aiomqtt.Client | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> DeviceSide:
        self._client = aiomqtt.Client(
            "127.0.0.1",
            self.broker.port,
            identifier=f"test-{self.device}-side",
            username=self.device,
            password=PASSWORDS[self.device],
        )
        await self._client.__aenter__()
        await self._client.subscribe(f"{PREFIX}/{self.device}/in/+", qos=1)
        self._task = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self._client is not None
        async for message in self._client.messages:
            viewer = str(message.topic).rsplit("/", 1)[-1]
            try:
                payload = json.loads(bytes(message.payload))  # type: ignore[arg-type]
            except ValueError:
                continue
            self.received.append((viewer, payload))

    async def publish(self, kind: str, payload: dict[str, Any] | bytes, retain: bool = False) -> None:
        assert self._client is not None
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        await self._client.publish(f"{PREFIX}/{self.device}/{kind}", data, qos=1, retain=retain)

    async def wait_received(
        self, predicate: Callable[[str, dict[str, Any]], bool], timeout: float
    ) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            for viewer, message in self.received:
                if predicate(viewer, message):
                    return viewer, message
            if time.monotonic() > deadline:
                raise AssertionError(f"not received in {timeout} s; got {self.received[-8:]}")
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._client is not None:
            await self._client.__aexit__(None, None, None)


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR; AssertionError if it is not a PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s: {what}")
        await asyncio.sleep(0.1)
