"""Which STUN/TURN servers the device uses, and the health checks that decide it.

Real coturn on 127.0.0.1 (tests/coturn.py); no namespaces needed.  The NAT
lab (test_nat.py) repeats the important cases through real NATs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiortc import RTCIceServer

from peercam.ice import IceServers, aiortc_can_use
from peercam.ice_health import IceHealth, ServerState
from peercam.turn import mint
from peercam.turn_probe import ProbeFailure, probe_stun, probe_turn
from tests.coturn import CoturnNotInstalled, LocalCoturn
from tests.daemon_proc import DaemonFactory
from tests.mosquitto import MosquittoBroker, free_port
from tests.viewer import ViewerFactory

SECRET = "unit-secret"


@pytest.fixture
def coturn_factory(tmp_path: Path) -> Iterator[Callable[..., LocalCoturn]]:
    servers: list[LocalCoturn] = []

    def make(port: int | None = None, secret: str = SECRET) -> LocalCoturn:
        try:
            server = LocalCoturn(tmp_path / f"coturn-{len(servers)}", secret, port=port)
        except CoturnNotInstalled as exc:
            pytest.fail(str(exc), pytrace=False)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def urls_of(servers: list[RTCIceServer]) -> list[str]:
    return [s.urls if isinstance(s.urls, str) else s.urls[0] for s in servers]


# --- choosing ------------------------------------------------------------------------


def test_the_device_prefers_turn_over_udp_then_tcp_then_tls() -> None:
    urls = [
        "turns:t.example.net:5349",
        "turn:t.example.net:3478?transport=tcp",
        "stun:s.example.net:3478",
        "turn:t.example.net:3478?transport=udp",
        "stun:s2.example.net:3478",
    ]
    ice = IceServers(urls, turn_secret="k", ttl=600, device_id="d")
    assert ice.device_turn_urls() == [urls[3], urls[1], urls[0]]
    assert urls_of(ice.for_device()) == [urls[2], urls[3]]
    down = {urls[2], urls[3]}
    assert urls_of(ice.for_device(usable=lambda u: u not in down)) == [urls[4], urls[1]]
    # Browsers get everything, in the configured order.
    assert ice.for_viewer("v")[1]["urls"] == [urls[0], urls[1], urls[3]]


def test_without_a_stun_url_the_device_uses_its_turn_servers_for_stun() -> None:
    ice = IceServers(
        ["turn:t.example.net?transport=tcp", "turn:t.example.net:3479"],
        turn_secret="k",
        ttl=600,
        device_id="d",
    )
    assert ice.device_stun_urls() == ["stun:t.example.net:3479"]
    assert urls_of(ice.for_device()) == ["stun:t.example.net:3479", "turn:t.example.net:3479"]
    # Viewers are not given a STUN URL nobody configured (browsers derive it themselves).
    assert all(not str(s["urls"]).startswith("stun") for s in ice.for_viewer("v"))


def test_urls_aiortc_would_silently_skip_are_never_given_to_it() -> None:
    assert not aiortc_can_use("stuns:s.example.net:5349")
    assert not aiortc_can_use("turn:t.example.net:3478?transport=sctp")
    assert not aiortc_can_use("turns:t.example.net:5349?transport=udp")
    assert aiortc_can_use("turns:t.example.net:5349")
    ice = IceServers(
        ["stuns:s.example.net", "turns:t.example.net:5349?transport=udp"],
        turn_secret="k",
        ttl=600,
        device_id="d",
    )
    assert ice.for_device() == []
    assert len(ice.for_viewer("v")) == 2


# --- probing -------------------------------------------------------------------------


async def test_turn_probe_says_exactly_what_fails(
    coturn_factory: Callable[..., LocalCoturn],
) -> None:
    turn = coturn_factory()
    good = mint(SECRET, "frontdoor", 600)
    wrong = mint("other", "frontdoor", 600)
    old = mint(SECRET, "frontdoor", 600, now=time.time() - 3600)
    for kind in ("udp", "tcp"):
        ok = await probe_turn(turn.url(kind), good.username, good.credential, peer="10.9.8.7")
        assert ok.ok and ok.relayed is not None and ok.relayed[0] == "127.0.0.1", ok
        # No denied-peer-ip for 10/8 here, but loopback peers are refused by default:
        assert ok.peer_allowed is True
        loop = await probe_turn(turn.url(kind), good.username, good.credential, peer="127.0.0.1")
        assert loop.peer_allowed is False and "403" in loop.peer_detail
    bad = await probe_turn(turn.url("udp"), wrong.username, wrong.credential)
    assert bad.failure is ProbeFailure.AUTH and "static-auth-secret" in bad.detail, bad
    expired = await probe_turn(turn.url("tcp"), old.username, old.credential)
    assert expired.failure is ProbeFailure.AUTH and "expired at" in expired.detail, expired
    none = await probe_turn(turn.url("udp"), None, None)
    assert none.failure is ProbeFailure.CONFIG and "turn_secret_file" in none.detail
    stun = await probe_stun(turn.url("stun"))
    assert stun.ok and stun.mapped is not None and stun.mapped[0] == "127.0.0.1"
    closed = free_port()
    refused_udp = await probe_turn(f"turn:127.0.0.1:{closed}", good.username, good.credential)
    assert refused_udp.failure is ProbeFailure.REFUSED and "ICMP port unreachable" in str(
        refused_udp
    )
    refused_tcp = await probe_turn(
        f"turn:127.0.0.1:{closed}?transport=tcp", good.username, good.credential
    )
    assert refused_tcp.failure is ProbeFailure.REFUSED and "connection refused" in str(refused_tcp)
    tls_on_plain = await probe_turn(
        f"turns:127.0.0.1:{turn.port}", good.username, good.credential, timeout=1.0
    )
    assert tls_on_plain.failure is ProbeFailure.TLS, tls_on_plain
    unresolvable = await probe_stun("stun:no-such-host.invalid:3478")
    assert unresolvable.failure is ProbeFailure.DNS


# --- health --------------------------------------------------------------------------


async def test_health_leaves_out_a_dead_server_and_takes_it_back(
    coturn_factory: Callable[..., LocalCoturn],
) -> None:
    live = coturn_factory()
    dead_port = free_port()
    dead = f"turn:127.0.0.1:{dead_port}?transport=udp"
    ice = IceServers(
        [live.url("stun"), dead, live.url("tcp")], turn_secret=SECRET, ttl=600, device_id="d"
    )
    changes: list[float] = []
    health = IceHealth(ice, on_change=lambda: changes.append(time.monotonic()), timeout=2.0)
    health.start()
    try:
        started = time.monotonic()
        servers = await ice.device_servers()
        print(f"\n[health] first round took {(time.monotonic() - started) * 1000:.0f} ms")
        assert urls_of(servers) == [live.url("stun"), live.url("tcp")]
        (fault,) = health.faults()
        assert dead in fault and "ICMP port unreachable" in fault, fault
        assert health.servers[dead].state is ServerState.DOWN
        assert changes

        coturn_factory(port=dead_port)  # the dead server comes back
        await health.check_now()
        assert health.faults() == []
        assert urls_of(ice.for_device()) == [live.url("stun"), dead]
    finally:
        await health.close()


async def test_a_gathering_without_relay_triggers_a_check(
    coturn_factory: Callable[..., LocalCoturn],
) -> None:
    turn = coturn_factory()
    ice = IceServers([turn.url("udp")], turn_secret=SECRET, ttl=600, device_id="d")
    health = IceHealth(ice, timeout=1.0, recheck_up=3600)
    health.start()
    try:
        servers = await ice.device_servers()
        assert health.servers[turn.url("udp")].state is ServerState.UP
        turn.stop()
        # A real answer came back with host candidates only: check now, not in an hour.
        ice.note_gathering(servers, {"host"})
        deadline = time.monotonic() + 10
        while health.servers[turn.url("udp")].state is not ServerState.DOWN:
            assert time.monotonic() < deadline, health.servers
            await asyncio.sleep(0.05)
        # Its STUN (derived from the TURN URL) was missing from the gathering too.
        assert urls_of(ice.for_device()) == []
        faults = health.faults()
        assert len(faults) == 2 and all("ICMP port unreachable" in f for f in faults), faults
    finally:
        await health.close()


async def test_wait_ready_is_immediate_without_health_checks() -> None:
    ice = IceServers([], turn_secret=None, ttl=600, device_id="d")
    assert await asyncio.wait_for(ice.device_servers(), 1) == []


# --- the daemon ------------------------------------------------------------------------


async def test_daemon_reports_a_dead_turn_server_and_answers_without_waiting_for_it(
    mosquitto: MosquittoBroker,
    daemon_factory: DaemonFactory,
    viewer_factory: ViewerFactory,
    tmp_path: Path,
) -> None:
    secret = tmp_path / "turn_secret"
    secret.write_text(SECRET, encoding="utf-8")
    dead = f"turn:127.0.0.1:{free_port()}?transport=tcp"
    daemon = await daemon_factory(
        mosquitto, config={"webrtc": {"ice_servers": [dead], "turn_secret_file": str(secret)}}
    )
    status = await daemon.wait_status(lambda s: bool(s.get("faults")), 15)
    assert any(dead in f and "connection refused" in f for f in status["faults"]), status
    viewer = await viewer_factory(mosquitto, "alice")
    watch = await viewer.watch()
    await watch.wait_frames(5, timeout=15)
    answer_ms = (watch.answer_at - watch.offer_sent_at) * 1000
    print(f"\n[health] offer→answer with a dead TURN/TCP server configured: {answer_ms:.0f} ms")
    log = daemon.log_text()
    assert f"ICE server {dead} is down: connection refused" in log
    assert "the device's own ICE uses host candidates only" in log
    # The viewer is still offered the URL: from its network the server may answer.
    assert viewer.ice_servers and viewer.ice_servers[0]["urls"] == [dead]
