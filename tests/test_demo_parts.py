"""The demo's parts that need no daemon: the embedded MQTT broker and the static web server.

Everything binds to 127.0.0.1 on free ports.  The broker tests check what
PROTOCOL.md relies on (retained ``status``, last-will ``bye``) and the amqtt
defects peercam works around; the web server tests use raw HTTP so that
path-traversal attempts reach the server unnormalised.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest
import websockets

from peercam.embedded_broker import EmbeddedBroker
from peercam.webserver import StaticServer

pytestmark = pytest.mark.timeout(30)

STATUS = "peercam/demo/status"
INBOX = "peercam/demo/in/v1"
BYE_ALL = b'{"v":1,"type":"bye","session":"*"}'


# --- MQTT helpers --------------------------------------------------------------------


def _mqtt_str(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def _packet(first_byte: int, body: bytes) -> bytes:
    assert len(body) < 128  # one-byte remaining length is enough here
    return bytes([first_byte, len(body)]) + body


def connect_with_will(
    client_id: bytes, topic: str, payload: bytes, *, retain: bool = False, keepalive: int = 60
) -> bytes:
    """A raw MQTT 3.1.1 CONNECT with a QoS 1 will (so a test can kill the socket abruptly)."""
    flags = 0x02 | 0x04 | (1 << 3) | (0x20 if retain else 0)
    body = (
        _mqtt_str(b"MQTT")
        + bytes([4, flags])
        + struct.pack("!H", keepalive)
        + _mqtt_str(client_id)
        + _mqtt_str(topic.encode())
        + _mqtt_str(payload)
    )
    return _packet(0x10, body)


def publish_qos1(topic: str, payload: bytes, packet_id: int = 1) -> bytes:
    return _packet(0x32, _mqtt_str(topic.encode()) + struct.pack("!H", packet_id) + payload)


DISCONNECT = b"\xe0\x00"


async def next_message(client: aiomqtt.Client, timeout: float = 3.0) -> aiomqtt.Message:
    async with asyncio.timeout(timeout):
        async for message in client.messages:
            return message
    raise AssertionError("unreachable")


async def no_message(client: aiomqtt.Client, within: float) -> aiomqtt.Message | None:
    """The first message within ``within`` seconds, or None."""
    try:
        return await next_message(client, within)
    except TimeoutError:
        return None


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    await b.start()
    try:
        yield b
    finally:
        await b.stop()


def tcp_client(broker: EmbeddedBroker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client("127.0.0.1", broker.tcp_port, identifier=name)


def ws_client(broker: EmbeddedBroker, name: str) -> aiomqtt.Client:
    return aiomqtt.Client(
        "127.0.0.1",
        broker.ws_port,
        identifier=name,
        transport="websockets",
        websocket_path="/mqtt",
    )


# --- broker --------------------------------------------------------------------------


async def test_broker_urls_name_real_ports(broker: EmbeddedBroker) -> None:
    assert re.fullmatch(r"mqtt://127\.0\.0\.1:\d+", broker.tcp_url)
    assert re.fullmatch(r"ws://127\.0\.0\.1:\d+/mqtt", broker.ws_url)
    assert broker.tcp_port > 0 and broker.ws_port > 0
    assert broker.tcp_port != broker.ws_port


async def test_retained_status_reaches_a_later_subscriber(broker: EmbeddedBroker) -> None:
    async with tcp_client(broker, "device") as device:
        await device.publish(STATUS, b'{"state":"online"}', qos=1, retain=True)
    async with tcp_client(broker, "viewer") as viewer:
        await viewer.subscribe(STATUS, qos=1)
        message = await next_message(viewer)
    assert message.payload == b'{"state":"online"}'
    assert message.retain


async def test_retained_message_goes_only_to_its_subscribers(broker: EmbeddedBroker) -> None:
    """amqtt 0.12 pushes every subscribed-to retained message to each new client; not here."""
    async with tcp_client(broker, "viewer") as viewer:
        await viewer.subscribe(STATUS, qos=1)
        await viewer.publish(STATUS, b'{"state":"online"}', qos=1, retain=True)
        await next_message(viewer)
        async with tcp_client(broker, "device") as device:
            await device.subscribe("peercam/demo/in/+", qos=1)
            assert await no_message(device, 0.5) is None


async def test_last_will_on_abrupt_close(broker: EmbeddedBroker) -> None:
    async with tcp_client(broker, "device") as device:
        await device.subscribe("peercam/demo/in/+", qos=1)
        reader, writer = await asyncio.open_connection("127.0.0.1", broker.tcp_port)
        writer.write(connect_with_will(b"viewer-tab", INBOX, BYE_ALL))
        await writer.drain()
        assert (await reader.readexactly(4))[:1] == b"\x20"  # CONNACK
        writer.transport.abort()  # no DISCONNECT: the broker must send the will
        message = await next_message(device)
    assert str(message.topic) == INBOX
    assert message.payload == BYE_ALL


async def test_last_will_when_keepalive_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """A client gone without closing its socket (power cut): amqtt 0.12 never noticed."""
    import peercam.embedded_broker as embedded_broker

    monkeypatch.setattr(embedded_broker, "KEEPALIVE_GRACE_S", 0)
    async with EmbeddedBroker() as b, tcp_client(b, "device") as device:
        await device.subscribe("peercam/demo/in/+", qos=1)
        reader, writer = await asyncio.open_connection("127.0.0.1", b.tcp_port)
        writer.write(connect_with_will(b"silent", INBOX, BYE_ALL, keepalive=1))
        await writer.drain()
        await reader.readexactly(4)
        message = await next_message(device, timeout=5)  # 1 s keep-alive + the will grace
        assert message.payload == BYE_ALL
        async with asyncio.timeout(2):
            assert await reader.read() == b""  # and the broker closed the connection
        writer.close()


async def test_retained_will_marks_a_dead_device_offline(broker: EmbeddedBroker) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", broker.tcp_port)
    writer.write(connect_with_will(b"device", STATUS, b'{"state":"offline"}', retain=True))
    await writer.drain()
    await reader.readexactly(4)
    writer.transport.abort()
    await asyncio.sleep(0.2)
    async with tcp_client(broker, "late-viewer") as viewer:
        await viewer.subscribe(STATUS, qos=1)
        message = await next_message(viewer)
    assert message.payload == b'{"state":"offline"}'
    assert message.retain


async def test_websocket_publish_reaches_tcp_subscriber_and_back(broker: EmbeddedBroker) -> None:
    async with tcp_client(broker, "device") as device, ws_client(broker, "browser") as browser:
        await device.subscribe("peercam/demo/in/+", qos=1)
        await browser.subscribe("peercam/demo/out/v1", qos=1)
        await browser.publish(INBOX, b'{"v":1,"type":"hello"}', qos=1)
        hello = await next_message(device)
        await device.publish("peercam/demo/out/v1", b'{"v":1,"type":"welcome"}', qos=1)
        welcome = await next_message(browser)
    assert (str(hello.topic), hello.payload) == (INBOX, b'{"v":1,"type":"hello"}')
    assert welcome.payload == b'{"v":1,"type":"welcome"}'


async def test_no_will_after_publish_disconnect_close_over_websocket(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    """What a closing browser tab sends: bye + DISCONNECT in one frame, then the socket closes.

    The PUBACK for the bye fails (socket closed) before amqtt has handled the
    DISCONNECT; without DiscardWillOnDisconnect the will went out every time,
    and its bye "*" would end the same viewer's sessions in other tabs.
    """
    bye = b'{"v":1,"type":"bye","session":"abcdefgh1234"}'
    async with tcp_client(broker, "device") as device:
        await device.subscribe("peercam/demo/in/+", qos=1)
        for attempt in range(5):
            async with websockets.connect(broker.ws_url, subprotocols=["mqtt"]) as ws:
                await ws.send(connect_with_will(f"tab-{attempt}".encode(), INBOX, BYE_ALL))
                await ws.recv()  # CONNACK
                await ws.send(publish_qos1(INBOX, bye) + DISCONNECT)
            message = await next_message(device)
            assert message.payload == bye
            assert await no_message(device, 0.3) is None, "will published after DISCONNECT"
    # amqtt itself logged a WARNING per closed WebSocket ("Unhandled exception: ...").
    noisy = [r for r in caplog.records if r.name.startswith("amqtt") and r.levelno >= 30]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_broker_stop_is_idempotent_and_frees_ports() -> None:
    b = EmbeddedBroker()
    await b.start()
    port = b.tcp_port
    await b.stop()
    await b.stop()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)


# --- web server ----------------------------------------------------------------------


async def http(server: StaticServer, raw_request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; return (status, headers, body) after the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(raw_request)
    await writer.drain()
    async with asyncio.timeout(5):
        data = await reader.read()  # the server closes after one response
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    (root / "vendor").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "app.js").write_text("console.log(1)")
    (root / "style.css").write_text("body{}")
    (root / "logo.svg").write_text("<svg/>")
    (root / "pic.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "data.json").write_text("{}")
    (root / "notes.txt").write_text("hi")
    (root / "vendor" / "lib.js").write_text("var x")
    (root / ".secret").write_text("no")
    (tmp_path / "pyproject.toml").write_text("[secret]")  # outside the root
    return root


@pytest.fixture
async def server(site: Path) -> AsyncIterator[StaticServer]:
    config = json.dumps({"broker_url": "ws://127.0.0.1:1/mqtt", "device": "demo"}).encode()
    s = StaticServer(site, extra_files={"config.json": config})
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


async def test_index_for_root_with_headers(server: StaticServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", server.url)
    status, headers, body = await http(server, get("/"))
    assert status == 200
    assert body == b"<!doctype html><title>t</title>"
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert headers["cache-control"] == "no-cache"
    assert headers["connection"] == "close"


@pytest.mark.parametrize(
    ("path", "ctype"),
    [
        ("/index.html", "text/html; charset=utf-8"),
        ("/app.js", "text/javascript; charset=utf-8"),
        ("/style.css", "text/css; charset=utf-8"),
        ("/logo.svg", "image/svg+xml"),
        ("/pic.png", "image/png"),
        ("/data.json", "application/json"),
        ("/notes.txt", "text/plain; charset=utf-8"),
        ("/vendor/lib.js?v=2", "text/javascript; charset=utf-8"),
    ],
)
async def test_content_types(server: StaticServer, path: str, ctype: str) -> None:
    status, headers, _ = await http(server, get(path))
    assert (status, headers["content-type"]) == (200, ctype)


async def test_generated_config_json(server: StaticServer) -> None:
    status, headers, body = await http(server, get("/config.json"))
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["device"] == "demo"


async def test_head_has_headers_but_no_body(server: StaticServer) -> None:
    status, headers, body = await http(server, get("/app.js", "HEAD"))
    assert status == 200
    assert headers["content-length"] == str(len("console.log(1)"))
    assert body == b""


@pytest.mark.parametrize("path", ["/missing.html", "/vendor/nope.js", "/.secret", "/%ff"])
async def test_not_found(server: StaticServer, path: str) -> None:
    status, _, body = await http(server, get(path))
    assert status == 404
    assert body.startswith(b"404 ")  # never the hidden file's content


@pytest.mark.parametrize(
    "path",
    [
        "/../pyproject.toml",
        "/%2e%2e/pyproject.toml",
        "/%2E%2E/pyproject.toml",
        "/..%2fpyproject.toml",
        "/vendor/../../pyproject.toml",
        "http://127.0.0.1/../pyproject.toml",
    ],
)
async def test_path_traversal_is_refused(server: StaticServer, path: str) -> None:
    status, _, body = await http(server, get(path))
    assert status in (403, 404)
    assert b"[secret]" not in body


async def test_symlink_out_of_the_root_is_refused(server: StaticServer, site: Path) -> None:
    (site / "escape.toml").symlink_to(site.parent / "pyproject.toml")
    status, _, body = await http(server, get("/escape.toml"))
    assert status in (403, 404)
    assert b"[secret]" not in body


async def test_other_methods_get_405(server: StaticServer) -> None:
    request = b"POST /index.html HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    status, headers, _ = await http(server, request)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x00\xff\xfe garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
        b"GET /\x00 HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
    ],
)
async def test_bad_requests_get_an_answer_and_the_server_lives_on(
    server: StaticServer, request_bytes: bytes
) -> None:
    status, _, _ = await http(server, request_bytes)
    assert 400 <= status < 600
    status, _, _ = await http(server, get("/"))
    assert status == 200


async def test_oversized_head_is_refused(server: StaticServer) -> None:
    request = b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n"
    status, _, _ = await http(server, request)
    assert status == 431


async def test_client_that_closes_at_once_does_no_harm(server: StaticServer) -> None:
    for _ in range(3):
        _, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.close()
    status, _, _ = await http(server, get("/"))
    assert status == 200


async def test_busy_port_raises_oserror(server: StaticServer, site: Path) -> None:
    other = StaticServer(site, port=server.port)
    with pytest.raises(OSError):
        await other.start()


async def test_serves_the_real_dashboard() -> None:
    from peercam.demo import dashboard_dir

    async with StaticServer(dashboard_dir()) as s:
        status, headers, body = await http(s, get("/"))
        assert status == 200 and b'src="vendor/mqtt.min.js"' in body
        status, headers, _ = await http(s, get("/vendor/mqtt.min.js", "HEAD"))
        assert status == 200
        assert headers["content-type"] == "text/javascript; charset=utf-8"


async def test_dashboard_does_not_serve_python_files() -> None:
    from peercam.demo import dashboard_dir

    async with StaticServer(dashboard_dir()) as s:
        status, _, _ = await http(s, get("/__init__.py"))
        assert status == 404


async def test_run_demo_says_plainly_when_the_port_is_busy(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from peercam.demo import run_demo

    blocker = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = blocker.sockets[0].getsockname()[1]
    try:
        with pytest.raises(SystemExit) as exc:
            await run_demo(http_port=port, stop=asyncio.Event())
    finally:
        blocker.close()
        await blocker.wait_closed()
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"port {port}" in err and "already in use" in err and "--port" in err


async def test_post_actions_run_same_origin_only(site: Path) -> None:
    rings: list[int] = []

    async def ring() -> dict[str, object]:
        rings.append(1)
        return {"ok": True, "rings": len(rings)}

    s = StaticServer(site, actions={"/api/ring": ring})
    await s.start()
    try:
        host = f"127.0.0.1:{s.port}"
        post = f"POST /api/ring HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{{}}"
        status, headers, body = await http(s, post.encode())
        assert (status, headers["content-type"], json.loads(body)) == (
            200,
            "application/json",
            {"ok": True, "rings": 1},
        )
        same = post.replace("Content-Length", f"Origin: http://{host}\r\nContent-Length")
        assert (await http(s, same.encode()))[0] == 200
        evil = post.replace("Content-Length", "Origin: http://evil.example\r\nContent-Length")
        assert (await http(s, evil.encode()))[0] == 403
        assert len(rings) == 2
        # POST elsewhere is still not allowed; GET of the action is not found.
        assert (await http(s, get("/index.html", "POST")))[0] == 405
        assert (await http(s, get("/api/ring")))[0] == 404
    finally:
        await s.stop()
