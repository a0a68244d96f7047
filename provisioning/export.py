"""``peercam provision export``: every generated file, from the registry.

Writes into the registry folder (nothing outside it)::

    mosquitto/passwd         password_file: user:$7$... hashes         (0600)
    mosquitto/acl            acl_file                                  (0644)
    mosquitto/peercam.conf   listeners + the lines loading those files (0644)
    mosquitto/tls/           the broker's certificate and key, with a private CA
    coturn/turnserver.conf   coturn, with the shared secret            (0600)
    janus/*.jcfg             Janus for /etc/janus: VideoRoom over WebSockets (with --janus)
    www/                     the dashboard + config.json (with --dashboard)
    caddy/Caddyfile          HTTPS for the dashboard and /mqtt (with --dashboard)
    devices/ID/peercam.toml  every device bundle, refreshed
    install-broker.sh        puts all that in place on the broker host (run as root)
"""

from __future__ import annotations

import ipaddress
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .broker_script import render_install_script
from .bundle import write_bundle
from .caddy import MQTT_PATH, render_caddyfile
from .coturn import render_turnserver_conf
from .files import ensure_dir, generate_secret, read_secret, write_file, write_secret
from .janus import JanusSettings, janus_files
from .mosquitto import render_acl, render_conf, render_passwd_file
from .registry import Registry
from .tls import tls_files


@dataclass
class ExportResult:
    written: list[Path] = field(default_factory=list)
    bundles: list[Path] = field(default_factory=list)

    @property
    def mosquitto_dir(self) -> Path:
        return self.written[0].parent


def ensure_turn_secret(registry: Registry) -> str | None:
    """The TURN secret (made on first need); None when no TURN server is configured."""
    if not registry.settings.turn_host:
        return None
    path = registry.turn_secret_path
    if not path.is_file():
        ensure_dir(path.parent)
        write_secret(path, generate_secret(32))
    return read_secret(path)


def write_janus_files(registry: Registry, public_ip: str = "") -> list[Path]:
    """janus/: Janus's config for /etc/janus, using the site's coturn as its STUN server."""
    s = registry.settings
    if public_ip:
        ipaddress.ip_address(public_ip)  # ValueError names the problem
    settings = JanusSettings(
        nat_1_1_mapping=public_ip,
        stun_server=f"{s.turn_host}:{s.turn_port}" if s.turn_host and not public_ip else "",
    )
    out = registry.root / "janus"
    ensure_dir(out)
    files = janus_files(settings, "/etc/janus")
    return [write_file(out / name, text, mode=0o644) for name, text in files.items()]


def dashboard_source() -> Path:
    import peercam.dashboard as pkg

    return Path(pkg.__file__).resolve().parent


def dashboard_config(registry: Registry) -> dict[str, str]:
    """What the dashboard reads from config.json to find the broker (``{host}`` = page host)."""
    s = registry.settings
    host = s.public_host or "{host}"
    if s.web_proxy:
        url = "wss://{host}" + MQTT_PATH  # the page's own origin, through the proxy
    elif s.tls:
        url = f"wss://{host}:{s.wss_port}/mqtt"
    else:
        url = f"ws://{host}:{s.ws_port}/mqtt"
    return {"broker_url": url, "topic_prefix": s.topic_prefix}


def export(
    registry: Registry, *, dashboard: bool = False, janus: bool = False, janus_public_ip: str = ""
) -> ExportResult:
    result = ExportResult()
    out = registry.root / "mosquitto"
    ensure_dir(out)
    result.written.append(write_file(out / "passwd", render_passwd_file(registry), mode=0o600))
    result.written.append(write_file(out / "acl", render_acl(registry), mode=0o644))
    result.written.append(
        write_file(
            out / "peercam.conf",
            render_conf(registry.settings),
            mode=0o644,
        )
    )
    if registry.settings.private_ca:
        files = tls_files(registry.tls_dir)
        for source, mode in ((files.server_cert, 0o644), (files.server_key, 0o600)):
            target = out / "tls" / source.name
            write_file(target, source.read_text(encoding="utf-8"), mode=mode)
            result.written.append(target)
    if dashboard:
        www = registry.root / "www"
        if www.exists():
            shutil.rmtree(www)
        shutil.copytree(
            dashboard_source(),
            www,
            ignore=shutil.ignore_patterns("__init__.py", "__pycache__", "*.pyc"),
        )
        config = json.dumps(dashboard_config(registry), indent=2) + "\n"
        result.written.append(write_file(www / "config.json", config, mode=0o644))
        if registry.settings.web_proxy:
            caddyfile = render_caddyfile(registry.settings)
            path = registry.root / "caddy" / "Caddyfile"
            result.written.append(write_file(path, caddyfile, mode=0o644))
    secret = ensure_turn_secret(registry)
    if secret is not None:
        conf = render_turnserver_conf(registry.settings, secret)
        path = registry.root / "coturn" / "turnserver.conf"
        result.written.append(write_file(path, conf, mode=0o600))
    if janus:
        result.written += write_janus_files(registry, janus_public_ip)
    for device in sorted(registry.data.devices):
        result.bundles.append(write_bundle(registry, device))
    script = render_install_script(registry.settings, registry.root, dashboard=dashboard)
    result.written.append(write_file(registry.root / "install-broker.sh", script, mode=0o700))
    return result
