"""The registry: who exists (devices, viewers), who may watch what, and a few settings.

One folder the admin owns (default ``~/.config/peercam/registry``, mode 0700)::

    registry.json            devices, viewers, grants, settings; password HASHES only
    secrets/turn-secret      coturn's use-auth-secret secret (0600)
    devices/ID/              the bundle for the Pi (peercam.toml, mqtt-password, ...)
    tls/                     the optional private CA and the broker's certificate
    mosquitto/, coturn/      written by ``export``

Viewer passwords are never stored in clear (they are printed once); a device's
password is kept in its bundle because the Pi needs it.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .files import ensure_dir, write_file

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_ID_RE = re.compile(ID_PATTERN)
PREFIX_PATTERN = r"^[A-Za-z0-9_/-]{1,64}$"
REGISTRY_FILE = "registry.json"
FORMAT_VERSION = 1


def default_registry_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "peercam" / "registry"


class ProvisionError(Exception):
    """A provisioning request that cannot be done; the message says why and what to do."""


def _problems(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: what is wrong; ...``."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors()
    )


def check_id(value: str, what: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ProvisionError(
            f"{what} id {value!r} is not valid: 1-64 lower-case letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Settings(_Model):
    """Site-wide choices; ``peercam provision init`` changes them."""

    topic_prefix: Annotated[str, Field(pattern=PREFIX_PATTERN)] = "peercam"
    #: The broker URL written into device bundles (``device add --broker`` overrides it).
    broker_url: str = ""
    #: The broker's host name as browsers reach it (dashboard config.json); "" = ``{host}``.
    public_host: str = ""
    mqtt_port: int = 1883
    mqtts_port: int = 8883
    ws_port: int = 8083
    wss_port: int = 8084
    #: ``use_username_as_clientid`` on every listener: one connection per user, so nobody
    #: can take over (disconnect) another user's session by reusing its client id.
    one_connection_per_user: bool = False
    #: Browsers reach the broker through a local reverse proxy (Caddy) that serves the
    #: dashboard over HTTPS and forwards /mqtt to a WebSockets listener on 127.0.0.1.
    web_proxy: bool = False
    #: Mosquitto's WebSockets listener for the proxy, on 127.0.0.1 only.
    proxy_ws_port: int = 9001
    #: Where the proxy serves the dashboard from (on the broker host).
    www_dir: str = "/var/www/peercam"
    #: Address every listener binds to ("" = all addresses).
    listen_address: str = ""
    #: Plain (unencrypted) MQTT and WebSockets listeners; None = only when there is no TLS.
    plain: bool | None = None
    #: Certificate and key as paths ON THE BROKER HOST ("" = no TLS listeners).
    tls_certfile: str = ""
    tls_keyfile: str = ""
    #: True when ``peercam provision tls`` made the certificate (devices then get ca.crt).
    private_ca: bool = False
    #: Where export's files go on the broker host (paths inside peercam.conf).
    mosquitto_dir: str = "/etc/mosquitto/peercam"
    #: Where a bundle goes on the Pi (paths inside peercam.toml); ``{device}`` = the id.
    install_dir: str = "/etc/peercam"
    #: TURN server host name ("" = no TURN) and port (UDP and TCP).
    turn_host: str = ""
    turn_port: int = 3478
    turn_realm: str = "peercam"
    #: coturn's relay port range (UDP), to open in the firewall.
    turn_min_port: int = 49160
    turn_max_port: int = 49400
    #: coturn ``external-ip`` (``PUBLIC`` or ``PUBLIC/PRIVATE``) for a server behind NAT.
    turn_external_ip: str = ""
    #: Networks coturn may relay to although they are private (e.g. the Pi's LAN).
    turn_allowed_peers: list[str] = []
    #: Home Assistant's discovery prefix, set once Home Assistant was added: devices may
    #: then write their discovery configs under it (also to remove them after
    #: ``homeassistant remove``). "" = Home Assistant never used here.
    ha_discovery_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9_-]{1,64})?$")] = ""

    @field_validator("broker_url")
    @classmethod
    def _check_broker(cls, url: str) -> str:
        if url:
            check_broker_url(url)
        return url

    @field_validator(
        "broker_url",
        "public_host",
        "listen_address",
        "tls_certfile",
        "tls_keyfile",
        "mosquitto_dir",
        "www_dir",
        "install_dir",
        "turn_host",
        "turn_realm",
        "turn_external_ip",
        mode="before",
    )
    @classmethod
    def _one_word(cls, value: object) -> object:
        # These end up inside mosquitto.conf, turnserver.conf, the Caddyfile and
        # peercam.toml: a space or a newline would change what those files say.
        if isinstance(value, str) and any(c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"{value!r} may not contain spaces, newlines or control characters")
        return value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, prefix: str) -> str:
        # the daemon's own rule ([mqtt] topic_prefix): refused there, refused here
        if prefix.startswith("/") or prefix.endswith("/") or "//" in prefix:
            raise ValueError(f"{prefix!r}: no leading or trailing '/', and no '//'")
        return prefix

    @field_validator("listen_address")
    @classmethod
    def _check_address(cls, address: str) -> str:
        if address:
            ipaddress.ip_address(address)  # ValueError names the problem
        return address

    @field_validator("turn_external_ip")
    @classmethod
    def _check_external_ip(cls, value: str) -> str:
        for part in value.split("/") if value else []:
            ipaddress.ip_address(part)
        if value.count("/") > 1:
            raise ValueError(f"{value!r}: expected PUBLIC or PUBLIC/PRIVATE addresses")
        return value

    @field_validator("turn_allowed_peers")
    @classmethod
    def _check_networks(cls, networks: list[str]) -> list[str]:
        return [str(ipaddress.ip_network(n, strict=False)) for n in networks]

    @field_validator("mosquitto_dir", "www_dir")
    @classmethod
    def _check_dir(cls, path: str) -> str:
        # install-broker.sh replaces these folders: never "/", "/etc" or the like.
        parts = PurePosixPath(path).parts
        if not path.startswith("/") or len(parts) < 3 or ".." in parts:
            raise ValueError(
                f"{path!r} must be an absolute folder of its own, e.g. /var/www/peercam"
            )
        return path

    @property
    def tls(self) -> bool:
        return bool(self.tls_certfile and self.tls_keyfile)

    @property
    def plain_listeners(self) -> bool:
        return (not self.tls) if self.plain is None else self.plain


def check_broker_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "ws", "wss") or not parts.hostname:
        raise ValueError(
            f"broker URL {url!r} must look like mqtts://broker.lan:8883 "
            "(schemes mqtt, mqtts, ws, wss)"
        )
    return url


class Device(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128)]

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if any(unicodedata.category(c).startswith("C") for c in name):
            raise ValueError(f"{name!r} may not contain newlines or control characters")
        return name

    broker_url: str = ""  # "" = the site's settings.broker_url
    password_hash: str
    camera: str = "picamera2"
    host_networks: list[str] = []


class Viewer(_Model):
    password_hash: str
    devices: list[str] = []


class HomeAssistantParty(_Model):
    """Home Assistant's MQTT user (docs/home-assistant.md): one per registry."""

    user: Annotated[str, Field(pattern=ID_PATTERN)] = "homeassistant"
    password_hash: str
    #: Every device, including ones added later; else only ``devices``.
    all_devices: bool = True
    devices: list[str] = []

    def sees(self, device: str) -> bool:
        return self.all_devices or device in self.devices


class RegistryData(_Model):
    version: int = FORMAT_VERSION
    settings: Settings = Settings()
    devices: dict[str, Device] = {}
    viewers: dict[str, Viewer] = {}
    homeassistant: HomeAssistantParty | None = None


class Registry:
    """The registry folder: load, change in memory, ``save()``."""

    def __init__(self, root: Path, data: RegistryData) -> None:
        self.root = root
        self.data = data

    # --- paths ---

    @property
    def path(self) -> Path:
        return self.root / REGISTRY_FILE

    @property
    def turn_secret_path(self) -> Path:
        return self.root / "secrets" / "turn-secret"

    def bundle_dir(self, device: str) -> Path:
        return self.root / "devices" / device

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def settings(self) -> Settings:
        return self.data.settings

    # --- load / save ---

    @classmethod
    def open(cls, root: Path, *, create: bool = True) -> Registry:
        """Read ``root/registry.json``; an absent registry is empty (created on save)."""
        root = Path(root).expanduser()
        path = root / REGISTRY_FILE
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            if not create:
                raise ProvisionError(
                    f"no registry at {root} (run 'peercam provision init' first)"
                ) from None
            ensure_dir(root)  # 0700 now, before any bundle or secret creates it with the umask
            return cls(root, RegistryData())
        except OSError as exc:
            raise ProvisionError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            data = RegistryData.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as exc:
            raise ProvisionError(f"{path}: not a valid peercam registry: {exc}") from None
        if data.version != FORMAT_VERSION:
            raise ProvisionError(f"{path}: registry format {data.version} is not supported")
        for kind, ids in (("device", data.devices), ("viewer", data.viewers)):
            for key in ids:
                if not _ID_RE.fullmatch(key):
                    raise ProvisionError(
                        f"{path}: {kind} id {key!r} is not valid (edited by hand?): "
                        "1-64 lower-case letters, digits, '-' or '_'"
                    )
        return cls(root, data)

    def save(self) -> None:
        ensure_dir(self.root)
        text = json.dumps(self.data.model_dump(mode="json"), indent=2, sort_keys=True)
        write_file(self.path, text + "\n", mode=0o600)

    # --- ids ---

    def _check_new_id(self, ident: str, what: str) -> None:
        check_id(ident, what)
        if ident in self.data.devices:
            raise ProvisionError(f"{ident!r} is already a device (ids are MQTT user names)")
        if ident in self.data.viewers:
            raise ProvisionError(f"{ident!r} is already a viewer (ids are MQTT user names)")
        ha = self.data.homeassistant
        if ha is not None and ident == ha.user:
            raise ProvisionError(
                f"{ident!r} is Home Assistant's MQTT user (ids are MQTT user names)"
            )

    def device(self, ident: str) -> Device:
        try:
            return self.data.devices[ident]
        except KeyError:
            raise ProvisionError(
                f"no device {ident!r} (devices: {', '.join(self.data.devices) or 'none'})"
            ) from None

    def viewer(self, ident: str) -> Viewer:
        try:
            return self.data.viewers[ident]
        except KeyError:
            raise ProvisionError(
                f"no viewer {ident!r} (viewers: {', '.join(self.data.viewers) or 'none'})"
            ) from None

    def device_broker_url(self, ident: str) -> str:
        url = self.device(ident).broker_url or self.settings.broker_url
        if not url:
            raise ProvisionError(
                f"device {ident!r} has no broker URL: pass --broker mqtts://HOST:8883, "
                "or set one for every device with 'peercam provision init --broker URL'"
            )
        return url

    # --- changes ---

    def add_device(self, ident: str, **fields: Any) -> Device:
        """A new device from ``Device`` fields; ProvisionError names what is wrong."""
        self._check_new_id(ident, "device")  # before the fields: the name defaults to the id
        try:
            device = Device(**fields)
        except ValidationError as exc:
            raise ProvisionError(f"invalid device {ident!r}: {_problems(exc)}") from None
        self.data.devices[ident] = device
        return device

    def remove_device(self, ident: str) -> list[str]:
        """Forget a device; returns the viewers that lost their grant to it."""
        self.device(ident)
        del self.data.devices[ident]
        affected = []
        for name, viewer in self.data.viewers.items():
            if ident in viewer.devices:
                viewer.devices = [d for d in viewer.devices if d != ident]
                affected.append(name)
        ha = self.data.homeassistant
        if ha is not None and ident in ha.devices:
            ha.devices = [d for d in ha.devices if d != ident]
        return affected

    def homeassistant_devices(self) -> list[str]:
        """The devices Home Assistant may see (none without Home Assistant)."""
        ha = self.data.homeassistant
        return [d for d in sorted(self.data.devices) if ha is not None and ha.sees(d)]

    def add_homeassistant(
        self,
        password_hash: str,
        *,
        user: str = "homeassistant",
        devices: list[str] | None = None,
        discovery_prefix: str = "homeassistant",
    ) -> HomeAssistantParty:
        """Home Assistant's MQTT user: every device (``devices`` None) or those listed."""
        if self.data.homeassistant is not None:
            raise ProvisionError(
                f"Home Assistant is already enrolled as {self.data.homeassistant.user!r} "
                "(`homeassistant remove` first, or `homeassistant password` for a new password)"
            )
        self._check_new_id(user, "Home Assistant user")
        for dev in devices or []:
            self.device(dev)
        self.update_settings(ha_discovery_prefix=discovery_prefix)
        party = HomeAssistantParty(
            user=user,
            password_hash=password_hash,
            all_devices=devices is None,
            devices=sorted(set(devices or [])),
        )
        self.data.homeassistant = party
        return party

    def homeassistant(self) -> HomeAssistantParty:
        if self.data.homeassistant is None:
            raise ProvisionError(
                "Home Assistant is not enrolled (peercam provision homeassistant add)"
            )
        return self.data.homeassistant

    def add_viewer(self, ident: str, password_hash: str, devices: list[str]) -> None:
        self._check_new_id(ident, "viewer")
        for dev in devices:
            self.device(dev)
        self.data.viewers[ident] = Viewer(password_hash=password_hash, devices=sorted(set(devices)))

    def remove_viewer(self, ident: str) -> None:
        self.viewer(ident)
        del self.data.viewers[ident]

    def grant(self, viewer: str, device: str) -> bool:
        """Let ``viewer`` watch ``device``; False when it already could."""
        entry = self.viewer(viewer)
        self.device(device)
        if device in entry.devices:
            return False
        entry.devices = sorted({*entry.devices, device})
        return True

    def revoke(self, viewer: str, device: str) -> bool:
        """Take ``device`` away from ``viewer``; False when it had no grant."""
        entry = self.viewer(viewer)
        self.device(device)
        if device not in entry.devices:
            return False
        entry.devices = [d for d in entry.devices if d != device]
        return True

    def update_settings(self, **changes: Any) -> None:
        try:
            self.data.settings = Settings.model_validate(
                {**self.data.settings.model_dump(), **changes}
            )
        except ValidationError as exc:
            raise ProvisionError(f"invalid setting: {_problems(exc)}") from None
