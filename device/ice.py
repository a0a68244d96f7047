"""ICE plumbing around aiortc/aioice: which local addresses to offer, which servers to use.

aioice gathers host candidates from every interface except loopback and has
no per-connection setting for it.  ``restrict_host_addresses`` installs, once
per process, a filter that keeps only addresses inside the configured
networks (loopback included when listed): a Pi with docker0 or a VPN wants
that, and tests that must stay on 127.0.0.1 need it.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence
from urllib.parse import parse_qs, urlsplit

import aioice.ice
import ifaddr
from aiortc import RTCIceServer

log = logging.getLogger("peercam.ice")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _all_addresses() -> list[str]:
    addresses: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                addresses.append(ip.ip)
            elif ip.ip[2] == 0:  # IPv6 without a scope id (no link-local)
                addresses.append(ip.ip[0])
    return addresses


class _HostAddressFilter:
    """Replacement for ``aioice.ice.get_host_addresses`` keeping allowed networks only."""

    def __init__(self, networks: Sequence[_Network]) -> None:
        self.networks = tuple(networks)

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        chosen = []
        for address in _all_addresses():
            ip = ipaddress.ip_address(address)
            if (ip.version == 4 and not use_ipv4) or (ip.version == 6 and not use_ipv6):
                continue
            if any(ip in net for net in self.networks):
                chosen.append(address)
        return chosen


def restrict_host_addresses(networks: Sequence[str]) -> list[str]:
    """Make ICE offer only host addresses inside ``networks``; returns the addresses kept.

    An empty list restores aioice's own behaviour (all non-loopback addresses).
    """
    if not networks:
        original = getattr(aioice.ice, "_peercam_original_get_host_addresses", None)
        if original is not None:
            aioice.ice.get_host_addresses = original
        return aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True)
    if not hasattr(aioice.ice, "_peercam_original_get_host_addresses"):
        aioice.ice._peercam_original_get_host_addresses = aioice.ice.get_host_addresses  # type: ignore[attr-defined]
    flt = _HostAddressFilter([ipaddress.ip_network(n, strict=False) for n in networks])
    aioice.ice.get_host_addresses = flt
    kept = flt(True, True)
    if not kept:
        log.warning(
            "no local address is inside [webrtc] host_networks %s: viewers can only "
            "connect through TURN",
            list(networks),
        )
    return kept


def split_ice_url(url: str) -> tuple[str, str, int | None, str | None]:
    """'turn:host:3478?transport=tcp' -> ('turn', 'host', 3478, 'tcp')."""
    scheme, _, rest = url.partition(":")
    rest, _, query = rest.partition("?")
    transport = parse_qs(query).get("transport", [None])[0]
    parts = urlsplit(f"//{rest}")
    return scheme, parts.hostname or "", parts.port, transport


def device_ice_servers(
    urls: Sequence[str], turn_username: str | None, turn_credential: str | None
) -> list[RTCIceServer]:
    """The servers the device's own peer connections use.

    aiortc uses only the first STUN and the first TURN URL it is given, so
    pass exactly those (and say so in the log once) instead of letting the
    rest be silently ignored.
    """
    stun = next((u for u in urls if u.startswith(("stun:", "stuns:"))), None)
    turn = next((u for u in urls if u.startswith(("turn:", "turns:"))), None)
    servers: list[RTCIceServer] = []
    if stun:
        servers.append(RTCIceServer(urls=stun))
    if turn:
        servers.append(RTCIceServer(urls=turn, username=turn_username, credential=turn_credential))
    return servers


class IceServers:
    """STUN/TURN servers for the device and for each viewer, with minted TURN credentials."""

    def __init__(self, urls: Sequence[str], *, turn_secret: str | None, ttl: int, device_id: str):
        self.urls = list(urls)
        self.turn_secret = turn_secret
        self.ttl = ttl
        self.device_id = device_id
        self._device_cache: tuple[float, list[RTCIceServer]] | None = None

    @property
    def turn_urls(self) -> list[str]:
        return [u for u in self.urls if u.startswith(("turn:", "turns:"))]

    @property
    def stun_urls(self) -> list[str]:
        return [u for u in self.urls if u.startswith(("stun:", "stuns:"))]

    def _credentials(self, user: str) -> tuple[str | None, str | None]:
        if not self.turn_secret:
            return None, None
        from .turn import mint

        creds = mint(self.turn_secret, user, self.ttl)
        return creds.username, creds.credential

    def for_viewer(self, viewer: str) -> list[dict[str, object]]:
        """RTCIceServer dictionaries for a browser: every configured URL."""
        servers: list[dict[str, object]] = []
        if self.stun_urls:
            servers.append({"urls": self.stun_urls})
        if self.turn_urls:
            username, credential = self._credentials(viewer)
            entry: dict[str, object] = {"urls": self.turn_urls}
            if username is not None:
                entry.update(username=username, credential=credential)
            servers.append(entry)
        return servers

    def for_device(self) -> list[RTCIceServer]:
        """The device's own servers; credentials re-minted well before they expire."""
        import time

        now = time.time()
        if self._device_cache is not None and self._device_cache[0] > now:
            return self._device_cache[1]
        username, credential = self._credentials(self.device_id)
        servers = device_ice_servers(self.urls, username, credential)
        self._device_cache = (now + self.ttl / 2, servers)
        return servers
