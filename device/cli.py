"""``peercam``: the command line (run, check, demo, dashboard)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from . import PROTOCOL_VERSION, __version__
from .config import Config, ConfigError, load_config

log = logging.getLogger("peercam")

DEFAULT_CONFIG = "/etc/peercam/peercam.toml"

EPILOG = f"""\
commands:
  peercam demo                          everything on this laptop: broker, test camera, web page
  peercam dashboard --port 8080         serve the browser dashboard alone (e.g. on the broker host)
  peercam run --config /etc/peercam/peercam.toml
  peercam check --config /etc/peercam/peercam.toml
  peercam ha-remove --config /etc/peercam/peercam.toml   remove the device from Home Assistant
  peercam provision --help              enrol devices and viewers, generate broker files

The config file is TOML; see peercam.example.toml and docs/configuration.md.
Signaling follows docs/PROTOCOL.md (version 1.1; messages carry "v": {PROTOCOL_VERSION}) over MQTT.
"""


FAKE_HARDWARE_HELP = (
    "use the built-in fake Raspberry Pi camera (a picamera2 stand-in encoding a test picture "
    "with libx264) instead of real hardware; for CI and laptops"
)


def setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 0 else logging.INFO
    if os.environ.get("JOURNAL_STREAM") or os.environ.get("INVOCATION_ID"):
        fmt = "%(levelname)s %(name)s: %(message)s"  # journald adds the time
    else:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)
    # aiortc/aioice are chatty at INFO; their warnings still show.
    for name in ("aioice", "aiortc", "peercam.mqtt.paho", "amqtt", "transitions", "picamera2"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose > 1 else logging.WARNING)


def _run_until_signal(main: Callable[[asyncio.Event], Coroutine[Any, Any, int | None]]) -> int:
    """Run ``main(stop)`` where SIGTERM/SIGINT set ``stop`` (a clean shutdown, not a traceback)."""

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second %s: exiting now", signal.Signals(signum).name)
                os._exit(1)
            log.info("%s received", signal.Signals(signum).name)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        return (await main(stop)) or 0

    return asyncio.run(runner())


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"peercam: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _fake_hardware(args: argparse.Namespace) -> None:
    """``--fake-hardware``: the fake picamera2 (``peercam.fakehw``) instead of a real Pi's."""
    if getattr(args, "fake_hardware", False):
        from .fakehw import install

        log.info("fake hardware: picamera2 and libcamera come from %s", install())


def cmd_run(args: argparse.Namespace) -> int:
    from .daemon import Daemon
    from .sources.factory import SourceUnavailable

    config = _load(args.config)
    _fake_hardware(args)
    log.info("peercam %s starting: device %r from %s", __version__, config.device.id, args.config)

    async def main(stop: asyncio.Event) -> int:
        daemon = Daemon(config, fake_hardware=args.fake_hardware)
        if args.fake_hardware:
            log.info(
                "fake hardware: mock GPIO pins; SIGUSR1 presses the call button, "
                "SIGUSR2 sends a visitor past the camera"
            )
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, daemon.press_call_button)
            asyncio.get_running_loop().add_signal_handler(signal.SIGUSR2, daemon.walk_visitor)
        try:
            await daemon.run(stop)
        except (ConfigError, SourceUnavailable) as exc:
            log.error("%s", exc)
            return 2
        return 0

    return _run_until_signal(main)


def cmd_check(args: argparse.Namespace) -> int:
    from .check import run_checks

    config = _load(args.config)
    if not args.verbose:
        logging.getLogger("peercam").setLevel(logging.WARNING)  # the report is the output
    _fake_hardware(args)
    print(f"config {args.config}: OK (device {config.device.id!r}, broker {config.mqtt.url})")
    return asyncio.run(run_checks(config, send_notifications=args.notify))


def cmd_ha_remove(args: argparse.Namespace) -> int:
    from .homeassistant import remove_from_homeassistant

    config = _load(args.config)
    ok = asyncio.run(remove_from_homeassistant(config))
    if ok:
        print(
            f"device {config.device.id!r}: discovery configs cleared under "
            f"{config.homeassistant.discovery_prefix}/ (Home Assistant removes its entities)"
        )
        return 0
    print("peercam ha-remove: the broker did not take every removal (see the log)", file=sys.stderr)
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from .demo import run_demo
    except ImportError as exc:
        print(
            f"peercam demo needs the demo extra: pip install 'peercam[demo]' ({exc})",
            file=sys.stderr,
        )
        return 2

    async def main(stop: asyncio.Event) -> int:
        await run_demo(
            host=args.host,
            http_port=args.port,
            width=args.width,
            height=args.height,
            fps=args.fps,
            stop=stop,
            homeassistant=args.homeassistant,
        )
        return 0

    return _run_until_signal(main)


def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the static dashboard folder alone; ``--broker-url`` prefills its sign-in form."""
    import errno
    import json
    from pathlib import Path

    import peercam.dashboard as dashboard

    from .webserver import StaticServer

    if args.broker_url and not args.broker_url.startswith(("ws://", "wss://")):
        print(
            f"peercam dashboard: --broker-url {args.broker_url!r} must be a WebSocket URL "
            "(ws://host:8083/mqtt or wss://host:8084/mqtt): browsers cannot speak MQTT over TCP",
            file=sys.stderr,
        )
        return 2
    config = {"broker_url": args.broker_url, "topic_prefix": args.prefix}
    server = StaticServer(
        Path(dashboard.__file__).resolve().parent,
        host=args.host,
        port=args.port,
        extra_files={"/config.json": json.dumps(config, indent=2).encode()},
    )

    async def main(stop: asyncio.Event) -> int:
        try:
            await server.start()
        except OSError as exc:
            why = "is already in use" if exc.errno == errno.EADDRINUSE else f"fails: {exc.strerror}"
            print(f"peercam dashboard: port {args.port} on {args.host} {why}", file=sys.stderr)
            return 2
        print(f"peercam dashboard: open {server.url} in a browser (Ctrl+C to stop)", flush=True)
        if args.host not in ("127.0.0.1", "localhost", "::1"):
            log.warning("plain http on %s: browsers allow microphones only on https", args.host)
        try:
            await stop.wait()
        finally:
            await server.stop()
        return 0

    return _run_until_signal(main)


# -v is accepted before the command (`peercam -vv run`) and after it (`peercam run -vv`).
# The command's own -v counts into another name: argparse copies a subparser's defaults
# over the main parser's values, so a shared `verbose` with default 0 would erase the -vv
# given before the command. main() adds the two.
VERBOSE_FLAGS = ("-v", "--verbose")
VERBOSE_AFTER_COMMAND: dict[str, Any] = {
    "dest": "verbose_after_command",
    "action": "count",
    "default": 0,
    "help": argparse.SUPPRESS,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peercam",
        description="Raspberry Pi camera/intercom daemon: hardware H.264 to every viewer "
        "over WebRTC, signaled over MQTT.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"peercam {__version__} (protocol v{PROTOCOL_VERSION})",
    )
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail (-vv: aiortc too)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon in the foreground",
        description="Run the device daemon in the foreground until SIGTERM/SIGINT: connects "
        "to the broker, publishes a retained status, answers viewers' offers. Logs go to "
        "stderr (journald under systemd). Exit code 2 means the config is wrong.",
    )
    run.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        help=f"TOML config file (default {DEFAULT_CONFIG})",
    )
    run.add_argument(
        "--fake-hardware",
        action="store_true",
        help=FAKE_HARDWARE_HELP + "; GPIO pins are gpiozero mocks, SIGUSR1 presses the "
        "call button and SIGUSR2 sends a scripted visitor past a test-pattern camera",
    )
    run.add_argument(*VERBOSE_FLAGS, **VERBOSE_AFTER_COMMAND)
    run.set_defaults(func=cmd_run)

    check = sub.add_parser(
        "check",
        help="validate the config and reach the broker",
        description="Validate the config file, read its secrets, build the camera source and "
        "connect to the broker once. Exit code 0 when everything passed, 1 when a check "
        "failed, 2 when the config itself is wrong.",
    )
    check.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        help=f"TOML config file (default {DEFAULT_CONFIG})",
    )
    check.add_argument(*VERBOSE_FLAGS, **VERBOSE_AFTER_COMMAND)
    check.add_argument("--fake-hardware", action="store_true", help=FAKE_HARDWARE_HELP)
    check.add_argument(
        "--notify",
        action="store_true",
        help="send a test notification to every [notify] URL and every browser subscribed "
        "to Web Push, and say which arrived (without it, nothing is sent)",
    )
    check.set_defaults(func=cmd_check)

    ha_remove = sub.add_parser(
        "ha-remove",
        help="remove this device from Home Assistant (clear its MQTT discovery configs)",
        description="Connect as the device and publish empty retained messages on every "
        "discovery config topic it may have published (and its ring snapshot): Home "
        "Assistant removes the device and its entities. Run it after stopping the daemon (a "
        "running one with [homeassistant] enabled publishes them again), before uninstalling; "
        "a daemon started with [homeassistant] enabled = false does the same by itself.",
    )
    ha_remove.add_argument(
        "--config",
        "-c",
        default=DEFAULT_CONFIG,
        help=f"TOML config file (default {DEFAULT_CONFIG})",
    )
    ha_remove.add_argument(*VERBOSE_FLAGS, **VERBOSE_AFTER_COMMAND)
    ha_remove.set_defaults(func=cmd_ha_remove)

    demo = sub.add_parser(
        "demo",
        help="broker + test camera + web page on this machine",
        description="Run everything on this machine with nothing but Python: an embedded MQTT "
        "broker (TCP and WebSockets on localhost), the daemon with a test-pattern camera, and "
        "a web page that shows the live video. Open the printed URL in any browser, as it "
        "comes (no flags, no camera or microphone permission): the video goes peer to peer "
        "to one of this machine's addresses, which the device offers besides 127.0.0.1.",
    )
    demo.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default 127.0.0.1; 0.0.0.0 lets a phone on your LAN watch)",
    )
    demo.add_argument("--port", type=int, default=8080, help="web page port (default 8080)")
    demo.add_argument(
        "--width", type=int, default=1280, help="test picture width in pixels (default 1280)"
    )
    demo.add_argument(
        "--height", type=int, default=720, help="test picture height in pixels (default 720)"
    )
    demo.add_argument("--fps", type=int, default=30, help="frames per second (default 30)")
    demo.add_argument(
        "--homeassistant",
        action="store_true",
        help="publish Home Assistant MQTT discovery (off by default): point Home Assistant's "
        "MQTT integration at the printed broker and the demo doorbell appears there",
    )
    demo.add_argument(*VERBOSE_FLAGS, **VERBOSE_AFTER_COMMAND)
    demo.set_defaults(func=cmd_demo)

    dash = sub.add_parser(
        "dashboard",
        help="serve the browser dashboard alone",
        description="Serve the static dashboard (sign in, devices, live view, calls) over "
        "HTTP. Any web server can host the same folder; this one can also prefill the "
        "broker's WebSocket URL. Microphones need https or localhost.",
    )
    dash.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    dash.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    dash.add_argument(
        "--broker-url",
        default="",
        help="prefill the sign-in form with this broker, e.g. wss://broker.example:8084/mqtt",
    )
    dash.add_argument("--prefix", default="peercam", help="MQTT topic prefix (default peercam)")
    dash.add_argument(*VERBOSE_FLAGS, **VERBOSE_AFTER_COMMAND)
    dash.set_defaults(func=cmd_dashboard)

    from .provisioning.cli import register as register_provision

    register_provision(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    args.verbose += getattr(args, "verbose_after_command", 0)
    setup_logging(args.verbose)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
