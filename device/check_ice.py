"""``peercam check``'s STUN/TURN part: ask every configured server for real.

TURN servers get an Allocate with credentials minted from the configured
secret exactly as the daemon mints them, so a wrong secret, a clock that
is off, a firewall or a dead server each show up as a sentence saying so.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .config import Config
from .ice import IceServers, aiortc_can_use
from .turn_probe import ProbeFailure, ProbeResult, probe_stun, probe_turn

#: A private address a TURN server must refuse to relay to (denied-peer-ip).
PRIVATE_PEER = "10.0.0.1"

Line = Callable[[bool, str], None]
Note = Callable[[str], None]


async def check_ice_servers(
    config: Config, turn_secret: str | None, line: Line, note: Note, *, timeout: float = 5.0
) -> int:
    """Probe every configured STUN/TURN URL; print one line each; return the failures."""
    urls = config.webrtc.ice_servers
    if not urls:
        note(
            "no STUN/TURN servers in [webrtc] ice_servers: only viewers on this LAN "
            "(or with a direct route) can connect"
        )
        return 0
    ice = IceServers(
        urls, turn_secret=turn_secret, ttl=config.webrtc.ice_ttl, device_id=config.device.id
    )
    username, credential = ice.device_credentials()
    plan: list[tuple[str, asyncio.Task[ProbeResult]]] = []
    derived = [u for u in ice.device_stun_urls() if u not in urls]
    for url in [*urls, *derived]:
        if not aiortc_can_use(url):
            note(f"{url}: for viewers only (aiortc cannot use this kind of URL)")
            continue
        if url.startswith(("turn:", "turns:")):
            coro = probe_turn(url, username, credential, timeout=timeout, peer=PRIVATE_PEER)
        else:
            coro = probe_stun(url, timeout=timeout)
        plan.append((url, asyncio.ensure_future(coro)))
    failures = 0
    for url, task in plan:
        result = await task
        label = f"{url} (STUN of the TURN server)" if url in derived else url
        if result.ok:
            line(True, f"{label}: {result.detail}")
            if result.peer_allowed:
                note(
                    f"{url}: the server relays to the private address {PRIVATE_PEER}: "
                    "add denied-peer-ip ranges (docs/nat-and-turn.md) so it cannot become a "
                    "door into the network it stands in"
                )
            continue
        detail = result.detail
        if result.failure is ProbeFailure.AUTH and config.webrtc.turn_secret_file:
            detail += f" (secret read from {config.webrtc.turn_secret_file})"
        if url in derived:
            # Only a bonus for the device: a TURN server may refuse STUN (no-stun).
            note(f"{label}: {detail}")
            continue
        line(False, f"{label}: {detail}")
        failures += 1
    working = {url for url, task in plan if task.result().ok}
    chosen = [str(s.urls) for s in ice.for_device(usable=working.__contains__)]
    if chosen:
        line(True, f"the device would use {' and '.join(chosen)}; viewers get all")
    return failures
