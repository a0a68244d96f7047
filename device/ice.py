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
import time
from collections.abc import Callable, Sequence
from typing import Protocol
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
    if kept and all(ipaddress.ip_address(a).is_loopback for a in kept):
        log.info(
            "ICE host candidates are loopback only (%s): Python viewers on this machine "
            "can connect, browsers cannot (they never pair with a remote loopback "
            "address) unless a TURN server is configured; add the LAN to [webrtc] "
            "host_networks for them",
            ", ".join(kept),
        )
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


def aiortc_can_use(url: str) -> bool:
    """Whether aiortc's ``connection_kwargs`` would use this URL at all.

    It takes ``stun:`` (not ``stuns:``), ``turn:`` over UDP or TCP and
    ``turns:`` over TCP (TLS); anything else it skips without a word.
    """
    scheme, host, _, transport = split_ice_url(url)
    if not host:
        return False
    if scheme == "stun":
        return transport is None
    if scheme == "turn":
        return (transport or "udp") in ("udp", "tcp")
    if scheme == "turns":
        return (transport or "tcp") == "tcp"
    return False


def turn_rank(url: str) -> int:
    """The device's preference among TURN URLs: UDP, then TCP, then TLS.

    The device sits on a LAN that usually lets UDP out, and UDP to the relay
    avoids TCP's head-of-line blocking under loss; TCP and TLS are for
    networks that block UDP (the health checks find out which works).
    """
    scheme, _, _, transport = split_ice_url(url)
    if scheme == "turns":
        return 2
    return 0 if (transport or "udp") == "udp" else 1


class ServerHealthView(Protocol):
    """What ``IceServers`` needs from the health checks (``peercam.ice_health.IceHealth``)."""

    def usable(self, url: str) -> bool: ...

    async def wait_ready(self) -> None: ...

    def note_gathering(
        self, servers: Sequence[RTCIceServer], candidate_types: set[str]
    ) -> None: ...


class IceServers:
    """STUN/TURN servers for the device and for each viewer, with minted TURN credentials.

    Viewers (browsers) get every configured URL: they try them all in
    parallel.  The device's aiortc uses one STUN and one TURN URL and waits
    up to 5 s for each, so it gets the best *working* one of each kind:
    ``health`` (set by the daemon) says which answer.
    """

    def __init__(self, urls: Sequence[str], *, turn_secret: str | None, ttl: int, device_id: str):
        self.urls = list(urls)
        self.turn_secret = turn_secret
        self.ttl = ttl
        self.device_id = device_id
        self.health: ServerHealthView | None = None
        self._device_credentials: tuple[float, tuple[str | None, str | None]] | None = None

    @property
    def turn_urls(self) -> list[str]:
        return [u for u in self.urls if u.startswith(("turn:", "turns:"))]

    @property
    def stun_urls(self) -> list[str]:
        return [u for u in self.urls if u.startswith(("stun:", "stuns:"))]

    def device_stun_urls(self) -> list[str]:
        """STUN URLs the device may use, in order; without any, the TURN servers' (UDP).

        coturn answers STUN Binding requests on its TURN port, and browsers use
        every UDP TURN server as a STUN server too; the device does the same so
        that configuring only a TURN URL still gives it a server-reflexive
        candidate (a direct path through friendly NATs).
        """
        stun = [u for u in self.stun_urls if aiortc_can_use(u)]
        if stun or self.stun_urls:
            return stun
        derived: list[str] = []
        for url in self.turn_urls:
            scheme, host, port, transport = split_ice_url(url)
            if scheme == "turn" and (transport or "udp") == "udp" and aiortc_can_use(url):
                candidate = f"stun:{host}:{port or 3478}"
                if candidate not in derived:
                    derived.append(candidate)
        return derived

    def device_turn_urls(self) -> list[str]:
        """TURN URLs the device may use, best first (UDP, TCP, TLS; then config order)."""
        return sorted((u for u in self.turn_urls if aiortc_can_use(u)), key=turn_rank)

    def device_urls(self) -> list[str]:
        return self.device_stun_urls() + self.device_turn_urls()

    def _credentials(self, user: str) -> tuple[str | None, str | None]:
        if not self.turn_secret:
            return None, None
        from .turn import mint

        creds = mint(self.turn_secret, user, self.ttl)
        return creds.username, creds.credential

    def device_credentials(self) -> tuple[str | None, str | None]:
        """The device's own TURN credentials; re-minted well before they expire."""
        now = time.time()
        if self._device_credentials is None or self._device_credentials[0] <= now:
            self._device_credentials = (now + self.ttl / 2, self._credentials(self.device_id))
        return self._device_credentials[1]

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

    def for_device(self, usable: Callable[[str], bool] | None = None) -> list[RTCIceServer]:
        """The device's own servers: the first usable STUN and the best usable TURN URL.

        ``usable`` defaults to the health checks' verdict (every URL without them).
        """
        if usable is None:
            usable = self.health.usable if self.health is not None else (lambda url: True)
        stun = next((u for u in self.device_stun_urls() if usable(u)), None)
        turn = next((u for u in self.device_turn_urls() if usable(u)), None)
        servers: list[RTCIceServer] = []
        if stun:
            servers.append(RTCIceServer(urls=stun))
        if turn:
            username, credential = self.device_credentials()
            servers.append(RTCIceServer(urls=turn, username=username, credential=credential))
        return servers

    async def device_servers(self) -> list[RTCIceServer]:
        """``for_device()`` once the first health checks are done (bounded wait)."""
        if self.health is not None:
            await self.health.wait_ready()
        return self.for_device()

    def note_gathering(self, servers: Sequence[RTCIceServer], candidate_types: set[str]) -> None:
        """Tell the health checks which candidate types one real gathering produced."""
        if self.health is not None:
            self.health.note_gathering(servers, candidate_types)
