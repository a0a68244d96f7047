"""What the dashboard tests share: a Mosquitto with passwords, an ACL and a WebSockets
listener; the dashboard served over HTTP; Chromium pages that record console errors.

The ACL follows PROTOCOL.md (v1.1, with the call topics): a
device reads and writes everything under ``peercam/{device}/``; a viewer reads
``status``, ``events``, ``calls``, ``snapshot/#`` and its own ``out`` topic of
the devices it was granted, and writes only its own ``in`` topic.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiomqtt
import pytest

from peercam.webserver import StaticServer
from tests.mosquitto import MosquittoBroker, write_password_file

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
PREFIX = "peercam"

#: Chromium flags for talkback: a fake microphone (a beep) and no permission prompt.
#: Granted media also makes Chromium show real host addresses instead of mDNS names;
#: the default behaviour (no permission, mDNS, no loopback) is tests/test_default_browser.py.
FAKE_MEDIA_ARGS = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]

#: users -> passwords. Devices and viewers; "mallory" may connect but sees no device.
PASSWORDS = {
    "frontdoor": "door-pw",
    "backyard": "yard-pw",
    "alice": "alice-pw",
    "bob": "bob-pw",
    "mallory": "mallory-pw",
    "carol": "carol-pw",
}
#: viewer -> devices it may watch
GRANTS = {"alice": ["frontdoor", "backyard"], "bob": ["frontdoor", "backyard"], "mallory": []}
#: viewer -> devices whose topics it may read but never write to (a broken ACL)
READ_ONLY = {"carol": ["frontdoor"]}
DEVICES = ("frontdoor", "backyard")
NAMES = {"frontdoor": "Front door", "backyard": "Back yard"}


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
                f"topic read {base}/clips",
                f"topic read {base}/thumb/#",
                f"topic read {base}/out/{viewer}",
                f"topic write {base}/in/{viewer}",
            ]
        lines.append("")
    for viewer, devices in READ_ONLY.items():
        lines.append(f"user {viewer}")
        for device in devices:
            lines += [
                f"topic read {PREFIX}/{device}/status",
                f"topic read {PREFIX}/{device}/out/{viewer}",
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
    return {
        "device": {"name": NAMES[device]},
        "mqtt": {"username": device, "password_file": str(secret)},
    }


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


def toast_says(text: str) -> str:
    """A wait_js expression: a notification (toast) containing ``text`` is shown."""
    return f"() => document.getElementById('toasts').innerText.includes({json.dumps(text)})"


def card(device: str) -> str:
    return f'.card[data-device="{device}"]'


def js_card(device: str, expression: str) -> str:
    """A wait_js expression about the card element ``c`` of ``device``."""
    query = f"document.querySelector('{card(device)}')"
    return f"() => {{ const c = {query}; return c && ({expression}); }}"


def image_loaded(selector: str, width: int | None = None) -> str:
    """A wait_js expression: the <img> at ``selector`` shows a picture (``width`` wide)."""
    test = f"i.naturalWidth === {width}" if width is not None else "i.naturalWidth > 0"
    return (
        f"() => {{ const i = document.querySelector({json.dumps(selector)});"
        f" return Boolean(i && {test}); }}"
    )


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
            "(d) => { const s = window.peercam.sessions[d];"
            " return s ? s.stats.framesDecoded : 0; }",
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

    async def publish(
        self, kind: str, payload: dict[str, Any] | bytes, retain: bool = False
    ) -> None:
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


# --- fixtures: a test module imports site_fixture, chromium_fixture, broker_fixture ----


@pytest.fixture(name="site")
async def site_fixture() -> AsyncIterator[str]:
    """The dashboard folder on a local static server (no generated config.json)."""
    server = StaticServer(DASHBOARD)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


@pytest.fixture(name="chromium")
async def chromium_fixture() -> AsyncIterator[Any]:
    """Chromium for the dashboard tests on the host's loopback: the loopback WebRTC flags
    (tests.browser: 127.0.0.1 is the only address these tests may use) and a fake
    microphone for talkback."""
    from playwright.async_api import async_playwright

    from tests.browser import launch_chromium

    async with async_playwright() as pw:
        browser = await launch_chromium(pw, extra_args=FAKE_MEDIA_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(name="broker")
def broker_fixture(
    mosquitto_factory: Callable[..., MosquittoBroker], tmp_path: Path
) -> MosquittoBroker:
    return secure_broker(mosquitto_factory, tmp_path / "broker")


async def start_device(
    daemon_factory: Any,
    broker: MosquittoBroker,
    tmp_path: Path,
    device: str = "frontdoor",
    extra_args: list[str] | None = None,
    **cfg: Any,
) -> Any:
    """The real daemon for ``device``, signed in with its password; waits until online.

    ``cfg`` adds config sections (``talkback={"sink": ...}``); ``extra_args`` go to
    ``peercam run``.
    """
    overrides = device_overrides(tmp_path / "secrets", device)
    overrides.update(cfg)
    return await daemon_factory(
        broker,
        device=device,
        config=overrides,
        status_auth=(device, PASSWORDS[device]),
        extra_args=extra_args,
    )


async def new_page(browser: Any, **context_args: Any) -> tuple[Any, Any]:
    context = await browser.new_context(**context_args)
    page = await context.new_page()
    return page, watch_console(page)


async def watching_page(
    browser: Any,
    site: str,
    broker: MosquittoBroker,
    viewer: str = "alice",
    *,
    frames: int = 5,
    init_script: str | None = None,
) -> tuple[Any, Any]:
    """A new page signed in as ``viewer`` that has decoded ``frames`` of frontdoor's video."""
    page, log = await new_page(browser)
    if init_script is not None:
        await page.add_init_script(init_script)
    await page.goto(dashboard_url(site, broker, viewer))
    await wait_frames(page, "frontdoor", frames, 30)
    return page, log


def shot(name: str) -> str:
    ARTIFACTS.mkdir(exist_ok=True)
    return str(ARTIFACTS / name)


def jpeg(width: int = 64, height: int = 48, rgb: tuple[int, int, int] = (200, 90, 40)) -> bytes:
    """A small real JPEG (PyAV's MJPEG encoder), as a device's call snapshot."""
    from fractions import Fraction

    import av
    import numpy as np

    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = Fraction(1, 25)
    image = np.zeros((height, width, 3), np.uint8)
    image[:, :] = rgb
    image[height // 3 : 2 * height // 3, width // 3 : 2 * width // 3] = (255, 255, 255)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
    packets = [*codec.encode(frame), *codec.encode(None)]
    data = bytes(packets[0])
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    return data


def audio_direction(sdp: str) -> str | None:
    """The direction attribute of the first audio m-line of an SDP, or None without audio."""
    section: list[str] | None = None
    for line in sdp.splitlines():
        if line.startswith("m="):
            if section is not None:
                break
            if line.startswith("m=audio"):
                section = []
            continue
        if section is not None:
            section.append(line)
    if section is None:
        return None
    for line in section:
        if line in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
            return line[2:]
    return "sendrecv"


class TcpRelay:
    """A TCP relay on 127.0.0.1 in front of a port: ``cut()`` drops every connection
    abruptly and refuses new ones (a network drop), ``restore()`` listens again on the
    same port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> TcpRelay:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            transport = writer.transport
            if isinstance(transport, asyncio.Transport):
                transport.abort()  # RST: no close handshake, as when the network goes away
        self._writers.clear()

    async def restore(self) -> None:
        await self.start()

    async def stop(self) -> None:
        await self.cut()
