"""Where the dashboard comes from and how it talks about brokers it cannot use:
``peercam dashboard``, any static web server, https pages, unreachable brokers and
certificates the browser refuses."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dashboard_env import (  # noqa: F401 - fixtures
    DASHBOARD,
    PASSWORDS,
    broker_fixture,
    chromium_fixture,
    new_page,
    shot,
    site_fixture,
    start_device,
    wait_frames,
    wait_js,
)
from tests.mosquitto import MosquittoBroker, free_port, port_accepts

pytestmark = pytest.mark.browser

SIGNIN = "document.getElementById('signin-text').textContent"


def signin_says(pattern: str) -> str:
    """A wait_js expression: the sign-in message matches the JS regex ``pattern``."""
    return f"() => /{pattern}/.test({SIGNIN}) && {SIGNIN}"


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert.pem, key.pem), as a home broker has."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    workdir.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def spawn(args: list[str], port: int, timeout: float = 15) -> subprocess.Popen[bytes]:
    """A server subprocess; returns once its port accepts connections (bounded)."""
    proc = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    end = time.monotonic() + timeout
    while not port_accepts(port):
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"{args} did not start serving on {port}:\n{out}")
        time.sleep(0.05)
    return proc


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    return proc.returncode, out


@pytest.fixture
def served() -> Iterator[Callable[[list[str], int], subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], port: int) -> subprocess.Popen[bytes]:
        proc = spawn(args, port)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop(proc, signal.SIGTERM)


def http_server(served: Callable[[list[str], int], subprocess.Popen[bytes]], folder: Path) -> int:
    """Python's http.server (standing for nginx & co) serving ``folder``; returns its port."""
    port = free_port()
    served(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
         "--directory", str(folder)],
        port,
    )  # fmt: skip
    return port


async def sign_in_with_form(page: Any, broker_url: str | None, viewer: str = "alice") -> None:
    if broker_url is not None:
        await page.fill("#f-broker", broker_url)
    await page.fill("#f-viewer", viewer)
    await page.fill("#f-password", PASSWORDS.get(viewer, "x"))
    await page.click("#signin-submit")


async def test_peercam_dashboard_serves_it_with_the_broker_prefilled(
    chromium: Any, broker: MosquittoBroker, daemon_factory: Any, tmp_path: Path
) -> None:
    from tests.test_demo_browser import read_url

    await start_device(daemon_factory, broker, tmp_path)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-u", "-m", "peercam", "dashboard", "--port", str(port)],
        *["--broker-url", broker.ws_url],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        url = await read_url(proc, 20)
        with urllib.request.urlopen(url + "config.json", timeout=5) as response:  # noqa: ASYNC210
            config = json.loads(response.read())
        assert config == {"broker_url": broker.ws_url, "topic_prefix": "peercam"}

        page, log = await new_page(chromium)
        await page.goto(url)
        # the form is filled from config.json, fetched after the load event goto waits for
        await wait_js(
            page,
            f"() => document.getElementById('f-broker').value === {json.dumps(broker.ws_url)}",
            10,
            "broker URL from config.json",
        )
        await sign_in_with_form(page, None)
        await wait_frames(page, "frontdoor", 10, 30)
        assert not log.unexpected(), log.errors
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
    out = (await proc.stdout.read()).decode(errors="replace") if proc.stdout else ""
    assert proc.returncode == 0, out
    assert "Traceback" not in out


async def test_any_static_web_server_can_host_it(
    chromium: Any,
    broker: MosquittoBroker,
    daemon_factory: Any,
    tmp_path: Path,
    served: Callable[[list[str], int], subprocess.Popen[bytes]],
) -> None:
    """Python's http.server stands for nginx & co: config comes from URL parameters."""
    await start_device(daemon_factory, broker, tmp_path)
    port = http_server(served, DASHBOARD)
    page, log = await new_page(chromium)
    query = f"broker_url={broker.ws_url}&viewer=alice&password={PASSWORDS['alice']}&signin=1"
    await page.goto(f"http://127.0.0.1:{port}/?{query}#/device/frontdoor")
    await wait_frames(page, "frontdoor", 10, 30)
    assert await page.evaluate("document.body.dataset.view") == "device"
    # The password does not stay in the address bar (nor in the history).
    assert "password" not in page.url and "viewer=alice" in page.url
    assert not log.unexpected(), log.errors


async def test_a_link_with_viewer_and_password_signs_in_with_the_sites_broker(
    chromium: Any,
    broker: MosquittoBroker,
    daemon_factory: Any,
    tmp_path: Path,
    served: Callable[[list[str], int], subprocess.Popen[bytes]],
) -> None:
    """The link a family member gets (README, "The phone"): the broker comes from config.json."""
    await start_device(daemon_factory, broker, tmp_path)
    site = tmp_path / "www"
    shutil.copytree(DASHBOARD, site)
    (site / "config.json").write_text(
        json.dumps({"broker_url": broker.ws_url, "topic_prefix": "peercam"})
    )
    port = http_server(served, site)
    page, log = await new_page(chromium)
    query = f"device=frontdoor&viewer=alice&password={PASSWORDS['alice']}"
    await page.goto(f"http://127.0.0.1:{port}/?{query}")
    await wait_frames(page, "frontdoor", 10, 30)
    assert await page.evaluate("document.body.dataset.view") == "device"
    assert "password" not in page.url
    assert not log.unexpected(), log.errors


async def test_unreachable_broker_and_refused_certificate_get_advice(
    chromium: Any,
    site: str,
    mosquitto_factory: Callable[..., MosquittoBroker],
    tmp_path: Path,
) -> None:
    page, log = await new_page(chromium)
    await page.goto(site)

    closed = free_port()  # nothing listens there
    await sign_in_with_form(page, f"ws://127.0.0.1:{closed}/mqtt")
    text = await wait_js(page, signin_says("Cannot reach"), 20)
    assert f"ws://127.0.0.1:{closed}/mqtt" in text and "port" in text
    assert await page.locator("#signin-cert").is_hidden()  # no certificate for ws://

    cert, key = self_signed(tmp_path / "tls")
    tls_broker = mosquitto_factory(websockets=True, ws_certfile=cert, ws_keyfile=key)
    await sign_in_with_form(page, tls_broker.ws_url)
    assert tls_broker.ws_url.startswith("wss://")
    text = await wait_js(page, signin_says("certificate"), 20)
    assert "self-signed" in text
    link = page.locator("#signin-cert-link")
    assert await link.is_visible()
    assert await link.get_attribute("href") == f"https://127.0.0.1:{tls_broker.ws_port}/"
    await page.screenshot(path=shot("dashboard-certificate.png"))
    # Only the browser's own notes about the failed WebSockets may be in the console.
    assert not log.unexpected(["WebSocket connection to"]), log.errors


HTTPS_SERVER = textwrap.dedent(
    """
    import functools, http.server, ssl, sys
    port, root, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    httpd.serve_forever()
    """
)


async def test_an_https_page_explains_that_it_needs_wss(
    chromium: Any,
    broker: MosquittoBroker,
    tmp_path: Path,
    served: Callable[[list[str], int], subprocess.Popen[bytes]],
) -> None:
    cert, key = self_signed(tmp_path / "tls")
    port = free_port()
    served(
        [sys.executable, "-c", HTTPS_SERVER, str(port), str(DASHBOARD), str(cert), str(key)], port
    )
    page, log = await new_page(chromium, ignore_https_errors=True)
    await page.goto(f"https://127.0.0.1:{port}/")
    assert await page.evaluate("location.protocol") == "https:"

    # Said while typing, and again (without trying) on submit.
    await page.fill("#f-broker", "ws://broker.invalid:8083/mqtt")
    problem = await page.inner_text("#f-broker-check")
    assert "https" in problem and "wss://" in problem
    await sign_in_with_form(page, None)
    text = await wait_js(page, signin_says("wss:"), 5)
    assert "https" in text and "wss://broker.invalid:8084/mqtt" in text
    await page.screenshot(path=shot("dashboard-https-ws.png"))

    # ws:// to this machine (loopback) is allowed from https pages: that one works.
    await sign_in_with_form(page, broker.ws_url)
    await wait_js(page, "() => document.body.dataset.view === 'devices'", 15)
    assert await page.evaluate("window.isSecureContext")
    # Chromium refuses service workers on a page whose certificate it does not trust
    # (and logs this itself, as an "SSL certificate error" or an "unknown error"
    # occurred when fetching the script); the dashboard works on without it.
    sw_refused = "error occurred when fetching the script."
    assert not log.unexpected([sw_refused]), log.errors


async def test_sign_in_rules_and_messages(chromium: Any, site: str) -> None:
    """The pure parts of the page (settings.js, link.js), run in the browser itself."""
    page, log = await new_page(chromium)
    await page.goto(site)
    result = await page.evaluate(
        """async () => {
          const s = await import('./settings.js');
          const l = await import('./link.js');
          const err = (url, proto) => s.checkBrokerUrl(url, proto).error || '';
          const file = {broker_url: 'ws://file:1/mqtt', topic_prefix: 'home'};
          const settings = s.resolveSettings(file, '?broker=ws://url:2/mqtt&viewer=bob');
          const asked = s.resolveSettings(file, '?broker=ws://url:2/mqtt&viewer=bob&signin=0');
          const plain = s.resolveSettings(file, '');
          return {
            tcp: err('mqtt://pi.local:1883', 'http:'),
            https_ws: err('ws://pi.local:8083/mqtt', 'https:'),
            https_ws_loopback: err('ws://127.0.0.1:8083/mqtt', 'https:'),
            https_wss: err('wss://pi.local:8084/mqtt', 'https:'),
            garbage: err('pi.local', 'http:'),
            empty: err('', 'http:'),
            bad_viewer: s.signinProblems({broker_url: 'ws://a:1/', viewer: 'Bob!',
                                          topic_prefix: 'peercam'}).join(' '),
            bad_prefix: s.signinProblems({broker_url: 'ws://a:1/', viewer: 'bob',
                                          topic_prefix: '/x/'}).join(' '),
            cert: s.certificatePageUrl('wss://pi.local:8084/mqtt'),
            no_cert: s.certificatePageUrl('ws://pi.local:8083/mqtt'),
            refusals: [4, 5, 134, 135, 1].map(c => l.describeRefusal(c, {viewer: 'bob'})),
            settings, asked, plain,
          };
        }"""
    )
    assert "plain TCP" in result["tcp"] and "ws://pi.local:8083/mqtt" in result["tcp"]
    assert "https" in result["https_ws"] and "wss://pi.local:8084/mqtt" in result["https_ws"]
    assert result["https_ws_loopback"] == ""  # browsers allow ws:// to this machine
    assert result["https_wss"] == ""
    assert "not a URL" in result["garbage"]
    assert "Enter the broker" in result["empty"]
    assert '"Bob!" is not valid' in result["bad_viewer"]
    assert "topic prefix" in result["bad_prefix"]
    assert result["cert"] == "https://pi.local:8084/"
    assert result["no_cert"] is None
    wrong, not_auth, wrong5, not_auth5, version = result["refusals"]
    assert wrong == wrong5 and "Wrong viewer id or password" in wrong
    assert not_auth == not_auth5 and "not authorised" in not_auth and '"bob"' in not_auth
    assert "MQTT version" in version
    # URL parameters win over config.json; the file fills the rest.
    signin = result["settings"]["signin"]
    assert signin["broker_url"] == "ws://url:2/mqtt" and signin["viewer"] == "bob"
    assert signin["topic_prefix"] == "home"
    assert result["settings"]["mqttVersion"] == 5
    # A link with broker and viewer signs in by itself, unless it says signin=0.
    assert result["settings"]["auto"] is True
    assert result["asked"]["auto"] is False
    assert result["plain"]["auto"] is False
    assert not log.unexpected(), log.errors
