"""``peercam provision``: enrol devices and viewers, generate broker, TURN and device files.

``register(subparsers)`` adds the command to ``peercam``'s parser;
``main(argv)`` runs it on its own (``python -m peercam.provisioning``).
Exit codes: 0 done, 1 a file could not be written, 2 a wrong request.
"""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .files import generate_secret
from .passwd import hash_password
from .registry import ProvisionError, Registry, check_broker_url, default_registry_dir

NEXT_STEP = "next: `peercam provision export`, install its files on the broker host, reload it"
MIN_PASSWORD = 8

EPILOG = """\
examples:
  peercam provision init --broker mqtts://broker.lan:8883 --turn-host turn.example.net
  peercam provision tls --host broker.lan --host 192.168.1.10     # optional private CA
  peercam provision device add frontdoor --name "Front door"
  peercam provision viewer add alice --device frontdoor           # prints alice's password once
  peercam provision grant bob frontdoor
  peercam provision init --public-host broker.example.net --web-proxy   # HTTPS via Caddy
  peercam provision homeassistant add                             # Home Assistant's MQTT user
  peercam provision export --dashboard
Secrets are written 0600 and never printed, except a generated viewer password (once).
"""


def _out(text: str) -> None:
    print(text, flush=True)


def _open(args: argparse.Namespace) -> Registry:
    return Registry.open(Path(args.registry))


def _networks(values: list[str] | None, what: str) -> list[str]:
    nets = []
    for value in values or []:
        try:
            nets.append(str(ipaddress.ip_network(value, strict=False)))
        except ValueError:
            raise ProvisionError(
                f"{what} {value!r} is not a network (e.g. 192.168.1.0/24)"
            ) from None
    return nets


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, generated) from --password, --password-stdin or a fresh random one."""
    if args.password is not None and args.password_stdin:
        raise ProvisionError("give --password or --password-stdin, not both")
    if args.password_stdin:
        password = (
            sys.stdin.readline().rstrip("\r\n")
            if not sys.stdin.isatty()
            else getpass.getpass("password: ")
        )
    elif args.password is not None:
        password = args.password
    else:
        return generate_secret(18), True
    if len(password) < MIN_PASSWORD or not password.isprintable():
        raise ProvisionError(f"a password needs at least {MIN_PASSWORD} printable characters")
    return password, False


# --- commands ---------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    registry = _open(args)
    changes: dict[str, Any] = {}
    for option, key in (
        ("broker", "broker_url"),
        ("prefix", "topic_prefix"),
        ("public_host", "public_host"),
        ("turn_host", "turn_host"),
        ("turn_port", "turn_port"),
        ("turn_external_ip", "turn_external_ip"),
        ("mosquitto_dir", "mosquitto_dir"),
        ("install_dir", "install_dir"),
        ("plain", "plain"),
        ("listen_address", "listen_address"),
        ("one_connection_per_user", "one_connection_per_user"),
        ("web_proxy", "web_proxy"),
        ("mqtt_port", "mqtt_port"),
        ("mqtts_port", "mqtts_port"),
        ("ws_port", "ws_port"),
        ("wss_port", "wss_port"),
        ("proxy_ws_port", "proxy_ws_port"),
    ):
        value = getattr(args, option)
        if value is not None:
            changes[key] = value
    if args.turn_allow_peer is not None:
        changes["turn_allowed_peers"] = _networks(args.turn_allow_peer, "--turn-allow-peer")
    if (args.tls_cert is None) != (args.tls_key is None):
        raise ProvisionError("--tls-cert and --tls-key go together")
    if args.tls_cert is not None:
        changes.update(tls_certfile=args.tls_cert, tls_keyfile=args.tls_key, private_ca=False)
    if args.broker:
        try:
            check_broker_url(args.broker)
        except ValueError as exc:
            raise ProvisionError(str(exc)) from None
    registry.update_settings(**changes)
    registry.save()
    s = registry.settings
    _out(f"registry {registry.root}")
    _out(f"  broker for devices: {s.broker_url or '(none yet: --broker URL)'}")
    _out(f"  topic prefix:       {s.topic_prefix}")
    _out(f"  TLS:                {s.tls_certfile or 'none'}")
    _out(f"  plain listeners:    {'yes (trusted LAN only)' if s.plain_listeners else 'no'}")
    _out(f"  TURN:               {s.turn_host or 'none'}")
    for warning in settings_warnings(registry):
        _out(f"warning: {warning}")
    return 0


def settings_warnings(registry: Registry) -> list[str]:
    """Combinations that would leave devices or browsers unable to connect."""
    s = registry.settings
    warnings = []
    urls = [s.broker_url] + [d.broker_url for d in registry.data.devices.values()]
    if any(url.startswith(("mqtts:", "wss:")) for url in urls) and not s.tls:
        warnings.append(
            "devices use TLS (mqtts://) but the broker has no certificate: run "
            "`peercam provision tls --host NAME` or `init --tls-cert FILE --tls-key FILE`"
        )
    if any(url.startswith(("mqtt:", "ws:")) for url in urls) and not s.plain_listeners:
        warnings.append("devices use plain mqtt:// but plain listeners are off (init --plain)")
    if not s.tls and not s.plain_listeners:
        warnings.append("no listener for devices: neither a certificate nor plain listeners")
    if s.web_proxy and not s.public_host:
        warnings.append("--web-proxy needs the broker's name for its certificate: --public-host")
    return warnings


def cmd_tls(args: argparse.Namespace) -> int:
    from .tls import make_ca, make_server_cert, tls_files

    registry = _open(args)
    files = tls_files(registry.tls_dir)
    if not files.ca_key.exists():
        make_ca(registry.tls_dir)
        _out(f"new private CA: {files.ca_cert} (its key {files.ca_key} stays here, 0600)")
    make_server_cert(registry.tls_dir, args.host)
    d = registry.settings.mosquitto_dir.rstrip("/")
    registry.update_settings(
        tls_certfile=f"{d}/tls/server.crt", tls_keyfile=f"{d}/tls/server.key", private_ca=True
    )
    registry.save()
    _out(f"broker certificate for {', '.join(args.host)}: {files.server_cert}")
    _out("devices get ca.crt in their bundle; browsers must trust ca.crt to use wss://")
    _out(NEXT_STEP)
    return 0


def cmd_device_add(args: argparse.Namespace) -> int:
    from .bundle import write_bundle
    from .export import ensure_turn_secret

    registry = _open(args)
    if args.broker:
        try:
            check_broker_url(args.broker)
        except ValueError as exc:
            raise ProvisionError(str(exc)) from None
    password = generate_secret(24)
    registry.add_device(
        args.id,
        name=args.name or args.id,
        broker_url=args.broker or "",
        password_hash=hash_password(password),
        camera=args.camera,
        host_networks=_networks(args.host_network, "--host-network"),
    )
    registry.device_broker_url(args.id)  # refuse before writing anything
    ensure_turn_secret(registry)
    folder = write_bundle(registry, args.id, password=password)
    registry.save()
    _out(f"device {args.id!r} added; its bundle (with secrets, 0600): {folder}/")
    _out(
        f"copy it to the Pi (scp -rp {folder} PI:) and run there: "
        f"sudo peercam/scripts/install-pi.sh --bundle ~/{args.id}"
    )
    _out(NEXT_STEP)
    return 0


def cmd_device_password(args: argparse.Namespace) -> int:
    from .bundle import write_bundle
    from .export import ensure_turn_secret

    registry = _open(args)
    device = registry.device(args.id)
    password = generate_secret(24)
    device.password_hash = hash_password(password)
    ensure_turn_secret(registry)
    folder = write_bundle(registry, args.id, password=password)
    registry.save()
    _out(f"device {args.id!r}: new MQTT password in {folder}/mqtt-password (copy it to the Pi)")
    _out(NEXT_STEP)
    return 0


def cmd_device_remove(args: argparse.Namespace) -> int:
    import shutil

    registry = _open(args)
    affected = registry.remove_device(args.id)
    registry.save()
    shutil.rmtree(registry.bundle_dir(args.id), ignore_errors=True)
    _out(f"device {args.id!r} removed (and its bundle)")
    if affected:
        _out(f"viewers that could watch it: {', '.join(affected)}")
    _out(NEXT_STEP)
    return 0


def cmd_viewer_add(args: argparse.Namespace) -> int:
    registry = _open(args)
    password, generated = _read_password(args)
    registry.add_viewer(args.id, hash_password(password), args.device)
    registry.save()
    _out(f"viewer {args.id!r} added; may watch: {', '.join(sorted(set(args.device)))}")
    if generated:
        _out(f"password: {password}")
        _out("(shown once: the registry keeps only its hash)")
    _out(NEXT_STEP)
    return 0


def cmd_viewer_password(args: argparse.Namespace) -> int:
    registry = _open(args)
    viewer = registry.viewer(args.id)
    password, generated = _read_password(args)
    viewer.password_hash = hash_password(password)
    registry.save()
    _out(f"viewer {args.id!r}: password changed")
    if generated:
        _out(f"password: {password}")
        _out("(shown once: the registry keeps only its hash)")
    _out(NEXT_STEP)
    return 0


def cmd_viewer_remove(args: argparse.Namespace) -> int:
    registry = _open(args)
    registry.remove_viewer(args.id)
    registry.save()
    _out(f"viewer {args.id!r} removed")
    _out(NEXT_STEP)
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    registry = _open(args)
    changed = registry.grant(args.viewer, args.device)
    registry.save()
    if changed:
        _out(f"{args.viewer!r} may now watch {args.device!r}")
        _out(NEXT_STEP)
    else:
        _out(f"{args.viewer!r} could already watch {args.device!r}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    registry = _open(args)
    changed = registry.revoke(args.viewer, args.device)
    registry.save()
    if changed:
        _out(f"{args.viewer!r} may no longer watch {args.device!r}")
        _out(NEXT_STEP)
    else:
        _out(f"{args.viewer!r} could not watch {args.device!r} anyway")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    registry = _open(args)
    data = registry.data
    _out(f"registry {registry.root} (topic prefix {registry.settings.topic_prefix!r})")
    _out(f"devices ({len(data.devices)}):")
    for name, device in sorted(data.devices.items()):
        url = device.broker_url or registry.settings.broker_url or "(no broker)"
        watchers = sorted(v for v, entry in data.viewers.items() if name in entry.devices)
        _out(f"  {name:<20} {device.name!r} via {url}; viewers: {', '.join(watchers) or 'none'}")
    _out(f"viewers ({len(data.viewers)}):")
    for name, viewer in sorted(data.viewers.items()):
        _out(f"  {name:<20} watches: {', '.join(viewer.devices) or 'nothing'}")
    if data.homeassistant is not None:
        seen = ", ".join(registry.homeassistant_devices()) or "nothing"
        _out(f"Home Assistant: user {data.homeassistant.user!r}, sees: {seen}")
    return 0


def homeassistant_broker(registry: Registry) -> tuple[str, int, bool]:
    """(host, port, tls) Home Assistant's MQTT integration connects to."""
    from urllib.parse import urlsplit

    s = registry.settings
    host = urlsplit(s.broker_url).hostname if s.broker_url else ""
    host = host or s.public_host or "BROKER-HOST"
    if s.tls:
        return host, s.mqtts_port, True
    return host, s.mqtt_port, False


def cmd_homeassistant_add(args: argparse.Namespace) -> int:
    registry = _open(args)
    password, generated = _read_password(args)
    party = registry.add_homeassistant(
        hash_password(password),
        user=args.user,
        devices=args.device or None,
        discovery_prefix=args.discovery_prefix,
    )
    registry.save()
    seen = ", ".join(registry.homeassistant_devices()) or "no device yet"
    later = " (and every device added later)" if party.all_devices else ""
    _out(f"Home Assistant's MQTT user {party.user!r} added; it sees: {seen}{later}")
    _print_homeassistant_steps(registry, password if generated else None)
    return 0


def _print_homeassistant_steps(registry: Registry, password: str | None) -> None:
    party = registry.homeassistant()
    host, port, tls = homeassistant_broker(registry)
    _out("")
    _out("In Home Assistant: Settings > Devices & services > Add integration > MQTT, enter:")
    _out(f"  Broker:    {host}")
    _out(f"  Port:      {port}")
    _out(f"  Username:  {party.user}")
    if password is not None:
        _out(f"  Password:  {password}")
        _out("             (shown once: the registry keeps only its hash)")
    else:
        _out("  Password:  the one you chose")
    if tls:
        ca = " and upload ca.crt from the registry's tls/ folder" * registry.settings.private_ca
        _out(f"  Advanced options: Broker certificate validation on{ca}; protocol TLS")
    _out(f"  Discovery prefix (MQTT options): {registry.settings.ha_discovery_prefix}")
    _out("")
    _out(
        f'The "Open door" button appears only where a door strike is wired and the Pi\'s '
        f"[gpio] door_openers lists {party.user!r}; it opens only during a call answered "
        "by a viewer who may open the door."
    )
    _out("next: `peercam provision export`, install its files on the broker host, reload it;")
    _out("      copy each device's refreshed peercam.toml ([homeassistant]) to its Pi")


def cmd_homeassistant_password(args: argparse.Namespace) -> int:
    registry = _open(args)
    party = registry.homeassistant()
    password, generated = _read_password(args)
    party.password_hash = hash_password(password)
    registry.save()
    _out(f"Home Assistant's MQTT user {party.user!r}: password changed")
    _print_homeassistant_steps(registry, password if generated else None)
    return 0


def cmd_homeassistant_remove(args: argparse.Namespace) -> int:
    registry = _open(args)
    party = registry.homeassistant()
    registry.data.homeassistant = None
    registry.save()
    _out(f"Home Assistant's MQTT user {party.user!r} removed")
    _out(
        "devices keep the right to clear their discovery configs: with the refreshed "
        "bundles ([homeassistant] enabled = false) each removes its entities when it restarts"
    )
    _out(NEXT_STEP)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    registry = _open(args)
    result = export(
        registry, dashboard=args.dashboard, janus=args.janus, janus_public_ip=args.janus_public_ip
    )
    registry.save()
    out = registry.root
    _out(f"wrote {', '.join(str(p.relative_to(out)) for p in result.written)}")
    if args.janus:
        _out(
            f"Janus: sudo install -m 0644 {out}/janus/*.jcfg /etc/janus/ && "
            "sudo systemctl restart janus   (then [relay] on the devices: docs/relay.md)"
        )
    _out(f"refreshed {len(result.bundles)} device bundle(s) in {out / 'devices'}/")
    for warning in settings_warnings(registry):
        _out(f"warning: {warning}")
    _out(f"on the broker host, put them in place with:  sudo sh {out}/install-broker.sh")
    return 0


# --- parser -----------------------------------------------------------------------------


def _with_func(parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int]) -> None:
    parser.set_defaults(func=run_command, provision_func=func)


def run_command(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; turn ProvisionError/OSError into a one-line message."""
    func = getattr(args, "provision_func", None)
    if func is None:
        args.provision_parser.print_help()
        return 2
    try:
        return int(func(args))
    except ProvisionError as exc:
        print(f"peercam provision: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"peercam provision: {exc}", file=sys.stderr)
        return 1


def configure(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add provision's options and subcommands to ``parser``."""
    registry_opt = argparse.ArgumentParser(add_help=False)
    registry_opt.add_argument(
        "--registry",
        default=argparse.SUPPRESS,
        help=f"registry folder (default {default_registry_dir()})",
    )
    parser.add_argument(
        "--registry",
        default=str(default_registry_dir()),
        help=f"registry folder (default {default_registry_dir()})",
    )
    parser.set_defaults(func=run_command, provision_parser=parser)
    sub = parser.add_subparsers(dest="provision_command", metavar="COMMAND")
    common = {"parents": [registry_opt]}

    init = sub.add_parser("init", help="site settings: broker URL, TURN, listeners", **common)
    init.add_argument("--broker", help="broker URL for devices, e.g. mqtts://broker.lan:8883")
    init.add_argument("--prefix", help="topic prefix (default peercam)")
    init.add_argument("--public-host", help="broker host name browsers use (dashboard config)")
    init.add_argument("--turn-host", help="TURN server host name ('' = no TURN)")
    init.add_argument("--turn-port", type=int, help="TURN port (default 3478)")
    init.add_argument("--turn-external-ip", help="coturn external-ip, for a server behind NAT")
    init.add_argument(
        "--turn-allow-peer",
        action="append",
        metavar="CIDR",
        help="a private network the TURN relay may reach (e.g. the Pi's LAN); repeatable",
    )
    init.add_argument("--tls-cert", help="certificate file on the broker host (e.g. Let's Encrypt)")
    init.add_argument("--tls-key", help="its key file on the broker host")
    init.add_argument("--mosquitto-dir", help="where export's files go on the broker host")
    init.add_argument("--install-dir", help="where a bundle goes on the Pi (default /etc/peercam)")
    init.add_argument("--listen-address", help="address every listener binds to (default all)")
    for name, default in (
        ("mqtt", 1883),
        ("mqtts", 8883),
        ("ws", 8083),
        ("wss", 8084),
        ("proxy-ws", 9001),
    ):
        init.add_argument(f"--{name}-port", type=int, help=f"{name} listener port ({default})")
    proxy = init.add_mutually_exclusive_group()
    proxy.add_argument(
        "--web-proxy",
        dest="web_proxy",
        action="store_const",
        const=True,
        help="browsers come through Caddy (HTTPS, dashboard, /mqtt); needs --public-host",
    )
    proxy.add_argument("--no-web-proxy", dest="web_proxy", action="store_const", const=False)
    own = init.add_mutually_exclusive_group()
    own.add_argument(
        "--one-connection-per-user",
        dest="one_connection_per_user",
        action="store_const",
        const=True,
        help="client id = user name: nobody can take over another user's connection, but "
        "each user gets ONE connection: the dashboard (one connection per watched device "
        "plus one for statuses) cannot work, and 'peercam check' disconnects a running "
        "daemon; only for brokers that serve devices and scripts, not browsers",
    )
    own.add_argument(
        "--many-connections-per-user",
        dest="one_connection_per_user",
        action="store_const",
        const=False,
    )
    plain = init.add_mutually_exclusive_group()
    plain.add_argument(
        "--plain",
        dest="plain",
        action="store_const",
        const=True,
        help="also open unencrypted listeners (1883, ws 8083): trusted LAN only",
    )
    plain.add_argument("--no-plain", dest="plain", action="store_const", const=False)
    _with_func(init, cmd_init)

    tls = sub.add_parser(
        "tls", help="a private CA and a broker certificate (LAN-only setups)", **common
    )
    tls.add_argument(
        "--host",
        action="append",
        required=True,
        help="broker host name or IP address the certificate is for; repeatable",
    )
    _with_func(tls, cmd_tls)

    device = sub.add_parser("device", help="add or remove a device (a Pi)", **common)
    dsub = device.add_subparsers(dest="device_command", metavar="ACTION")
    device.set_defaults(provision_parser=device)
    add = dsub.add_parser("add", help="enrol a device and write its bundle", **common)
    add.add_argument("id", help="device id: a-z 0-9 - _ (its MQTT user name)")
    add.add_argument("--name", help="name shown on dashboards (default: the id)")
    add.add_argument("--broker", help="broker URL (default: init --broker)")
    add.add_argument(
        "--camera",
        choices=("picamera2", "test-pattern"),
        default="picamera2",
        help="camera source (default picamera2)",
    )
    add.add_argument(
        "--host-network",
        action="append",
        metavar="CIDR",
        help="limit the device's ICE host candidates to this network; repeatable",
    )
    _with_func(add, cmd_device_add)
    rm = dsub.add_parser("remove", help="forget a device (and its grants)", **common)
    rm.add_argument("id")
    _with_func(rm, cmd_device_remove)
    pw = dsub.add_parser("password", help="give a device a new MQTT password", **common)
    pw.add_argument("id")
    _with_func(pw, cmd_device_password)

    viewer = sub.add_parser("viewer", help="add or remove a viewer (a person)", **common)
    vsub = viewer.add_subparsers(dest="viewer_command", metavar="ACTION")
    viewer.set_defaults(provision_parser=viewer)

    def password_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--password", help="the password (default: generated and printed once)")
        p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")

    vadd = vsub.add_parser("add", help="enrol a viewer allowed to watch devices", **common)
    vadd.add_argument("id", help="viewer id: a-z 0-9 - _ (its MQTT user name)")
    vadd.add_argument(
        "--device", action="append", required=True, help="a device it may watch; repeatable"
    )
    password_options(vadd)
    _with_func(vadd, cmd_viewer_add)
    vrm = vsub.add_parser("remove", help="forget a viewer", **common)
    vrm.add_argument("id")
    _with_func(vrm, cmd_viewer_remove)
    vpw = vsub.add_parser("password", help="set a viewer's password", **common)
    vpw.add_argument("id")
    password_options(vpw)
    _with_func(vpw, cmd_viewer_password)

    grant = sub.add_parser("grant", help="let a viewer watch a device", **common)
    grant.add_argument("viewer")
    grant.add_argument("device")
    _with_func(grant, cmd_grant)
    revoke = sub.add_parser("revoke", help="stop a viewer watching a device", **common)
    revoke.add_argument("viewer")
    revoke.add_argument("device")
    _with_func(revoke, cmd_revoke)

    ha = sub.add_parser(
        "homeassistant",
        help="Home Assistant's MQTT user (discovery: the doorbell appears there by itself)",
        **common,
    )
    hsub = ha.add_subparsers(dest="homeassistant_command", metavar="ACTION")
    ha.set_defaults(provision_parser=ha)
    hadd = hsub.add_parser(
        "add",
        help="create Home Assistant's MQTT user with exactly the ACL it needs; prints what "
        "to enter in Home Assistant's MQTT integration",
        **common,
    )
    hadd.add_argument(
        "--device",
        action="append",
        help="a device Home Assistant may see; repeatable (default: every device, "
        "including ones added later)",
    )
    hadd.add_argument(
        "--user", default="homeassistant", help="its MQTT user name (default homeassistant)"
    )
    hadd.add_argument(
        "--discovery-prefix",
        default="homeassistant",
        help="Home Assistant's MQTT discovery prefix (default homeassistant)",
    )
    password_options(hadd)
    _with_func(hadd, cmd_homeassistant_add)
    hpw = hsub.add_parser("password", help="a new password for Home Assistant's user", **common)
    password_options(hpw)
    _with_func(hpw, cmd_homeassistant_password)
    hrm = hsub.add_parser(
        "remove", help="remove Home Assistant's user (devices then remove their entities)", **common
    )
    _with_func(hrm, cmd_homeassistant_remove)

    lst = sub.add_parser("list", help="devices, viewers and grants (no secrets)", **common)
    _with_func(lst, cmd_list)

    exp = sub.add_parser(
        "export", help="write Mosquitto, coturn and device files from the registry", **common
    )
    exp.add_argument(
        "--dashboard",
        action="store_true",
        help="also write www/ (the dashboard and its config.json) and, with --web-proxy, "
        "caddy/Caddyfile",
    )
    exp.add_argument(
        "--janus",
        action="store_true",
        help="also write janus/: Janus's config for /etc/janus (the VideoRoom over WebSockets "
        'on port 8188, nothing else), for [relay] mode = "janus" (docs/relay.md)',
    )
    exp.add_argument(
        "--janus-public-ip",
        default="",
        metavar="IP",
        help="the broker host's public address when it is behind NAT (Janus's nat_1_1_mapping)",
    )
    _with_func(exp, cmd_export)
    return parser


DESCRIPTION = (
    "Keep a registry of devices and viewers and generate from it: device bundles (config "
    "and secrets for a Pi), Mosquitto's password file, ACL and listeners, coturn's config."
)


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``provision`` to a parent parser's subcommands (``peercam provision``)."""
    parser = subparsers.add_parser(
        "provision",
        help="enrol devices and viewers; generate broker, TURN and device files",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure(parser)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="peercam provision",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return configure(parser)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
