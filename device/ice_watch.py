"""What one session's ICE saw, for a log line a person can act on when it fails.

aioice keeps its candidates and pairs but forgets the checks it answered and
the mDNS names it could not resolve, and "ICE failed" alone says nothing
about which side could not reach which.  ``IceWatch`` records both for one
session (bounded), and ``report()`` turns the whole picture into one line:
the device's candidates, the viewer's (with each ``….local`` name and what
became of it), the checks that arrived from the viewer, the pairs and their
states, and what that most likely means.

It also holds the offer-side half of the device's ICE policy
(``split_offer``): the device answers without waiting for the viewer's mDNS
names to resolve, and never passes end-of-candidates on to aioice, which
would otherwise give up as soon as its own check list is empty or failed,
even though the viewer's checks (peer-reflexive candidates) may still come.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aioice.mdns import is_mdns_hostname

MAX_SOURCES = 32  # distinct check sources remembered per session
UNRESOLVED = ""  # an mDNS name nobody answered for


@dataclass
class OfferCandidate:
    """A candidate line taken out of the offer, to be added after the answer."""

    line: str  # "candidate:…" without "a="
    mline_index: int
    mid: str | None


def split_offer(sdp: str) -> tuple[str, list[OfferCandidate], bool]:
    """(the offer without mDNS candidates and end-of-candidates, those candidates, had-end).

    aiortc resolves every candidate of the offer before it returns from
    ``setRemoteDescription``, so a ``….local`` name nobody answers for
    (multicast blocked) delays the answer by aioice's 1 s mDNS timeout; and
    an ``a=end-of-candidates`` there would let aioice fail the session as
    soon as its own checks have nothing to do.
    """
    kept: list[str] = []
    taken: list[tuple[int, str]] = []
    mids: dict[int, str] = {}
    index = -1
    end = False
    newline = "\r\n" if "\r\n" in sdp else "\n"
    for line in sdp.splitlines():
        if line.startswith("m="):
            index += 1
        elif line.startswith("a=mid:") and index >= 0:
            mids[index] = line[len("a=mid:") :].strip()
        elif line.strip() == "a=end-of-candidates":
            end = True
            continue
        elif line.startswith("a=candidate:") and index >= 0:
            fields = line.split()
            if len(fields) > 4 and is_mdns_hostname(fields[4]):
                taken.append((index, line[len("a=") :]))
                continue
        kept.append(line)
    candidates = [OfferCandidate(text, i, mids.get(i)) for i, text in taken]
    return newline.join(kept) + newline, candidates, end


def _describe_candidate(candidate: Any, mdns: dict[str, str]) -> str:
    host = candidate.host
    text = f"{candidate.type} {host}:{candidate.port}"
    if is_mdns_hostname(host):
        address = mdns.get(host, getattr(candidate, "_network_host", UNRESOLVED))
        text += f" (= {address})" if address else " (mDNS, not resolved)"
    return text


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class IceWatch:
    """Checks and mDNS outcomes of one session; ``attach`` it to the aioice connection."""

    label: str
    mdns: dict[str, str] = field(default_factory=dict)  # name -> address or UNRESOLVED
    checks: Counter[str] = field(default_factory=Counter)  # "addr:port" -> requests seen
    end_of_candidates: bool = False
    connection: Any = None

    def attach(self, connection: Any) -> None:
        """Count every STUN request that reaches the connection (the viewer's checks)."""
        if connection is None or self.connection is connection:
            return
        self.connection = connection
        original = connection.request_received

        def request_received(message: Any, addr: tuple[Any, ...], protocol: Any) -> None:
            source = f"{addr[0]}:{addr[1]}"
            if source in self.checks or len(self.checks) < MAX_SOURCES:
                self.checks[source] += 1
            original(message, addr, protocol)

        connection.request_received = request_received

    def mdns_outcome(self, name: str) -> str:
        """After aioice tried ``name``: its address, or UNRESOLVED (remembered)."""
        address = UNRESOLVED
        if self.connection is not None:
            for candidate in self.connection.remote_candidates:
                if candidate.host == name:
                    address = getattr(candidate, "_network_host", UNRESOLVED) or UNRESOLVED
                    break
        self.mdns[name] = address
        return address

    # --- the report -----------------------------------------------------------------

    def report(self) -> str:
        """One paragraph: candidates, checks, pairs, and what it most likely means."""
        conn = self.connection
        local = list(conn.local_candidates) if conn is not None else []
        remote = list(conn.remote_candidates) if conn is not None else []
        pairs = list(getattr(conn, "_check_list", [])) if conn is not None else []
        parts = [
            "device offered " + (_join(_describe_candidate(c, {}) for c in local) or "nothing"),
            "viewer offered "
            + (
                _join(
                    [_describe_candidate(c, self.mdns) for c in remote if c.type != "prflx"]
                    + [
                        f"host {name} (mDNS, not resolved)"
                        for name, address in self.mdns.items()
                        if not address and not any(c.host == name for c in remote)
                    ]
                )
                or "nothing"
            )
            + (" (then end-of-candidates)" if self.end_of_candidates else ""),
            "checks from the viewer: "
            + (_join(f"{src} ×{n}" for src, n in self.checks.most_common(6)) or "none"),
            "pairs: " + (_join(_describe_pair(p) for p in pairs[:8]) or "none"),
        ]
        advice = self.advice(local, pairs)
        return "; ".join(parts) + ". " + advice[:1].upper() + advice[1:]

    def advice(self, local: list[Any], pairs: list[Any]) -> str:
        if any(_state(p) == "SUCCEEDED" for p in pairs):
            return (
                "ICE found a path but the session did not complete (DTLS): the viewer "
                "may have closed meanwhile"
            )
        if self.checks:
            return (
                "the viewer's checks arrived but no pair succeeded: the device's answers "
                "do not get back to the viewer (a one-way firewall or NAT); a TURN server "
                "in [webrtc] ice_servers gives such viewers a path"
            )
        hosts = [c for c in local if c.type == "host"]
        if hosts and all(_is_loopback(c.host) for c in hosts) and len(hosts) == len(local):
            return (
                "no check came from the viewer, and the device offered only loopback "
                "addresses, which browsers never use: let [webrtc] host_networks include "
                "the LAN (or configure a TURN server)"
            )
        unresolved = [n for n, a in self.mdns.items() if not a]
        hint = (
            " (its mDNS names could not be resolved either: multicast does not work "
            "between the two)"
            if unresolved
            else ""
        )
        return (
            "no check from the viewer reached the device: the viewer cannot reach any "
            f"address the device offered{hint}; it is on another network or behind a "
            "firewall or Wi-Fi client isolation; a TURN server in [webrtc] ice_servers "
            "gives such viewers a path"
        )


def _state(pair: Any) -> str:
    state = getattr(pair, "state", None)
    return getattr(state, "name", str(state))


def _describe_pair(pair: Any) -> str:
    local, remote = pair.local_candidate, pair.remote_candidate
    return (
        f"{local.host}:{local.port} → {remote.type} "
        f"{getattr(remote, '_network_host', remote.host)}:{remote.port} {_state(pair).lower()}"
    )


def _join(items: Iterable[str]) -> str:
    return ", ".join(items)
