"""``peercam demo``: everything on one machine, with nothing but Python.

One event loop runs three things: the embedded MQTT broker (TCP for the
daemon, WebSockets for the browser), the real daemon with the test-pattern
camera, and a static web server for the dashboard page plus a generated
``/config.json`` that tells the page where the broker is.  The user opens one
URL; Ctrl+C stops the daemon first (so its ``bye`` and ``offline`` status
still reach the page through the broker), then the web server, then the
broker.

Everything binds to ``host`` (127.0.0.1 by default).  The broker is
anonymous, so any other address (``--host 0.0.0.0`` to watch from a phone)
logs a warning: use it only on a network you trust.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import logging
import sys
import webbrowser
from pathlib import Path
from typing import Any

from .config import Config, ConfigError, config_from_dict
from .daemon import Daemon
from .embedded_broker import BrokerStartError, EmbeddedBroker
from .webserver import StaticServer

log = logging.getLogger("peercam.demo")

DEVICE_ID = "demo"
DEVICE_NAME = "peercam demo"
TOPIC_PREFIX = "peercam"
#: Seconds to wait for the daemon's first connection before printing the URL anyway.
READY_TIMEOUT_S = 15.0
#: Seconds the daemon gets to shut down (bye to viewers, offline status) before it is cancelled.
DAEMON_STOP_TIMEOUT_S = 10.0

DASHBOARD_DIR = Path(__file__).resolve().parent.parent / "dashboard"


def dashboard_dir() -> Path:
    """The dashboard folder, from a source checkout or an installed wheel."""
    try:
        import peercam.dashboard as pkg

        return Path(pkg.__file__).resolve().parent
    except (ImportError, TypeError):  # pragma: no cover - running from an unusual layout
        return DASHBOARD_DIR


#: Every IPv4 address of the machine, 127.0.0.1 included (ICE's own default leaves
#: loopback out), and its global and unique-local IPv6 addresses (not ::1).
ALL_ADDRESSES = ["0.0.0.0/0", "2000::/3", "fc00::/7"]


def host_networks_for(host: str) -> list[str]:
    """ICE host candidates the demo offers, for the address the page is served on.

    A browser as people run it never pairs with a remote 127.0.0.1 (and hides
    its own addresses behind mDNS names), so on the default loopback bind the
    demo offers the machine's other addresses too: the browser on this
    machine reaches one of them, the device learns the browser's address from
    its checks, and the broker that carries the answer is reachable from this
    machine only, so the addresses go nowhere else.  127.0.0.1 stays for
    Python viewers (``tests/viewer.py``, the benchmarks).  A wildcard bind
    (``--host 0.0.0.0``, to watch from a phone) offers the same; a specific
    address offers only that address.  A machine with no address but
    loopback gives a browser no path: the dashboard says so.
    """
    if host == "localhost":
        return list(ALL_ADDRESSES)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return []  # another host name: let ICE offer the machine's addresses
    if ip.is_unspecified or ip.is_loopback:
        return list(ALL_ADDRESSES)
    return [f"{ip}/{ip.max_prefixlen}"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def demo_config(
    mqtt_url: str,
    *,
    host: str = "127.0.0.1",
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    homeassistant_url: str | None = None,
) -> Config:
    """The daemon configuration of the demo; raises ConfigError on a bad size or rate."""
    data: dict[str, Any] = {
        "device": {"id": DEVICE_ID, "name": DEVICE_NAME},
        "mqtt": {
            "url": mqtt_url,
            "username": DEVICE_ID,
            "password_file": "",
            "topic_prefix": TOPIC_PREFIX,
        },
        "camera": {
            "source": "test-pattern",
            "width": width,
            "height": height,
            "fps": fps,
            "bitrate": 2_000_000,
            "keyframe_interval": 60,
        },
        "audio": {"source": "none"},
        "webrtc": {"max_viewers": 4, "ice_servers": [], "host_networks": host_networks_for(host)},
    }
    if homeassistant_url is not None:  # --homeassistant: discovery on, the page as its link
        data["homeassistant"] = {"enabled": True, "dashboard_url": homeassistant_url}
    return config_from_dict(data, source_path="<peercam demo>")


def browser_broker_url(broker: EmbeddedBroker) -> str:
    """The broker's WebSocket URL as the page should use it.

    On a wildcard bind (``--host 0.0.0.0``, to watch from a phone) the browser
    must use whatever address it reached the page on: the page replaces
    ``{host}`` with ``location.hostname``.
    """
    if broker.host in ("0.0.0.0", "::", ""):
        return f"ws://{{host}}:{broker.ws_port}/mqtt"
    return broker.ws_url


def page_config(broker_ws_url: str) -> dict[str, object]:
    """What the dashboard reads from /config.json: the broker, and to sign in by itself."""
    return {
        "broker_url": broker_ws_url,
        # Empty: each tab picks its own viewer id, so the last will of a tab
        # that crashes ends only that tab's session (the will says "bye *").
        "viewer": "",
        "password": "",
        "topic_prefix": TOPIC_PREFIX,
        # The embedded broker is anonymous and speaks MQTT 3.1.1 only.
        "auto_signin": True,
        "mqtt_version": 4,
        # The demo's device has a (mock) call button: the page shows "ring".
        "demo": True,
    }


def _fail(message: str) -> SystemExit:
    """Print a plain sentence for the person at the terminal; exit code 2."""
    print(f"peercam demo: {message}", file=sys.stderr, flush=True)
    return SystemExit(2)


async def run_demo(
    *,
    host: str = "127.0.0.1",
    http_port: int = 8080,
    open_browser: bool = False,
    stop: asyncio.Event | None = None,
    width: int = 1280,
    height: int = 720,
    fps: int = 30,
    homeassistant: bool = False,
) -> None:
    """Run broker + daemon + web page until ``stop`` is set (or the task is cancelled).

    Problems the user can fix (port taken, bad size) are printed as one
    sentence and raise ``SystemExit(2)``.
    """
    stop = stop if stop is not None else asyncio.Event()
    try:  # a bad --width/--height/--fps is reported before anything binds a port
        demo_config("mqtt://127.0.0.1:1883", host=host, width=width, height=height, fps=fps)
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    if not _is_loopback(host):
        log.warning(
            "serving the demo on %s: its MQTT broker accepts anyone who can reach this "
            "address (no password, no TLS); use it only on a network you trust",
            host,
        )

    broker = EmbeddedBroker(host=host, debug=logging.getLogger("amqtt").isEnabledFor(logging.DEBUG))
    web: StaticServer | None = None
    daemon_task: asyncio.Task[None] | None = None
    daemon_stop = asyncio.Event()
    try:
        # The web port is the one the user chose: bind it first, so "port busy" comes
        # before anything else has started.
        web = StaticServer(dashboard_dir(), host=host, port=http_port)
        try:
            await web.start()
        except OSError as exc:
            web = None
            if exc.errno == errno.EADDRINUSE:
                raise _fail(
                    f"port {http_port} on {host} is already in use (another peercam demo?); "
                    f"choose another one with --port {http_port + 1 if http_port else 8081}"
                ) from None
            raise _fail(
                f"cannot serve the web page on {host}:{http_port}: {exc.strerror}"
            ) from None

        try:
            await broker.start()
        except BrokerStartError as exc:
            raise _fail(str(exc)) from None
        web.extra_files["/config.json"] = json.dumps(
            page_config(browser_broker_url(broker)), indent=2
        ).encode()

        config = demo_config(
            broker.tcp_url,
            host=host,
            width=width,
            height=height,
            fps=fps,
            homeassistant_url=web.url if homeassistant else None,
        )
        daemon = Daemon(config, fake_hardware=True)

        async def ring() -> dict[str, object]:
            daemon.press_call_button()
            return {"ok": True}

        web.actions["/api/ring"] = ring
        daemon_task = asyncio.create_task(daemon.run(daemon_stop), name="peercam-demo-daemon")

        await _wait_ready(daemon, daemon_task, stop)
        if stop.is_set():
            return
        print(
            f"peercam demo: open {web.url} in a browser (Ctrl+C to stop)",
            flush=True,
        )
        if homeassistant:
            print(
                f"peercam demo: Home Assistant: add the MQTT integration with broker "
                f"{host}, port {broker.tcp_port}, "
                "no user name (this demo broker is open to anyone who reaches it)",
                flush=True,
            )
        if open_browser:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(webbrowser.open, web.url)

        stop_task = asyncio.create_task(stop.wait(), name="peercam-demo-stop")
        try:
            await asyncio.wait({daemon_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop_task.cancel()
        if daemon_task.done() and not stop.is_set():
            exc = daemon_task.exception()
            raise _fail(f"the daemon stopped unexpectedly: {str(exc) or type(exc).__name__}")
    finally:
        await _shutdown(daemon_task, daemon_stop, web, broker)


async def _wait_ready(daemon: Daemon, daemon_task: asyncio.Task[None], stop: asyncio.Event) -> None:
    """Until the daemon is online (its status published), it failed, or we are stopped."""
    ready = getattr(daemon, "ready", None)
    if not isinstance(ready, asyncio.Event):
        return
    waiters = {
        asyncio.create_task(ready.wait(), name="peercam-demo-ready"),
        asyncio.create_task(stop.wait(), name="peercam-demo-stop-early"),
    }
    try:
        await asyncio.wait(
            {*waiters, daemon_task}, timeout=READY_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for waiter in waiters:
            waiter.cancel()
    if daemon_task.done():
        exc = daemon_task.exception()
        raise _fail(f"the daemon did not start: {str(exc) or 'it exited'}")
    if not ready.is_set() and not stop.is_set():
        log.warning("the daemon is not connected to the embedded broker yet; the page will wait")


async def _shutdown(
    daemon_task: asyncio.Task[None] | None,
    daemon_stop: asyncio.Event,
    web: StaticServer | None,
    broker: EmbeddedBroker,
) -> None:
    """Daemon first (its bye/offline go out through the broker), then web, then broker."""
    if daemon_task is not None:
        daemon_stop.set()
        if not daemon_task.done():
            try:
                await asyncio.wait_for(asyncio.shield(daemon_task), DAEMON_STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning(
                    "the daemon did not stop within %.0f s; cancelling it", DAEMON_STOP_TIMEOUT_S
                )
                daemon_task.cancel()
            except Exception:
                pass  # reported below
        if daemon_task.done() and not daemon_task.cancelled() and daemon_task.exception():
            log.error("the daemon failed: %s", daemon_task.exception())
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await daemon_task
    if web is not None:
        await web.stop()
        await broker.stop()
        log.info("demo stopped")
