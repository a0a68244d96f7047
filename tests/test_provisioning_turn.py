"""Real coturn with the turnserver.conf ``peercam provision export`` generates.

The test binds coturn to 127.0.0.1 (listener and relay) and checks: credentials
minted the way the device mints them (from the bundle's secret) allocate; a
wrong secret or an expired credential does not; the relay refuses every
private, loopback, link-local and multicast peer, except a network the admin
allowed.  Permission checks happen at CHANNEL-BIND, which sends nothing to
the peer: no packet leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aioice.stun
import pytest
from aioice.turn import TurnClientUdpProtocol

from peercam.provisioning.coturn import render_turnserver_conf
from peercam.provisioning.registry import Registry
from peercam.turn import mint
from tests.daemon_proc import attach_log
from tests.mosquitto import free_port
from tests.provisioned import Site

TURNSERVER = shutil.which("turnserver") or "/usr/bin/turnserver"


@contextlib.asynccontextmanager
async def allocation(
    port: int, username: str, password: str
) -> AsyncIterator[TurnClientUdpProtocol]:
    """A TURN allocation on 127.0.0.1:port (aioice's client); deleted on exit."""
    loop = asyncio.get_running_loop()
    server = ("127.0.0.1", port)
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: TurnClientUdpProtocol(
            server, username=username, password=password, lifetime=600, channel_refresh_time=500
        ),
        remote_addr=server,
    )
    try:
        await protocol.connect()
        yield protocol
    finally:
        if protocol.relayed_address is not None:
            await protocol.delete()
        transport.close()


def launch_coturn(tmp_path: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    """Provision a site with TURN, start coturn from its config; (process, port, secret)."""
    if not Path(TURNSERVER).exists():
        pytest.fail("the TURN tests need coturn: sudo apt-get install coturn", pytrace=False)
    port = free_port()
    site = Site(tmp_path)
    site.init(
        "--turn-host", "127.0.0.1", "--turn-port", str(port), "--turn-allow-peer", "10.99.0.0/16"
    )
    site.add_device("frontdoor")
    site.export()
    exported = (site.registry / "coturn" / "turnserver.conf").read_text()
    # The same settings, bound to 127.0.0.1 and logging to a file (the only differences).
    reg = Registry.open(site.registry)
    secret = site.bundle_file("frontdoor", "turn-secret").read_text().strip()
    log = tmp_path / "turn.log"
    conf = render_turnserver_conf(reg.settings, secret, listening_ip="127.0.0.1", log_file=str(log))
    assert set(exported.splitlines()) - set(conf.splitlines()) == {"syslog"}
    path = tmp_path / "turnserver.conf"
    path.write_text(conf)
    proc = subprocess.Popen(
        [TURNSERVER, "-c", str(path), "--pidfile=", "--userdb", str(tmp_path / "turndb")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, port, secret


@pytest.fixture
async def coturn(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[tuple[int, str]]:
    """coturn from the generated config; yields (port, the device bundle's TURN secret)."""
    proc, port, secret = launch_coturn(tmp_path)
    attach_log(
        request.node,
        "coturn log",
        lambda: "\n".join(p.read_text(errors="replace") for p in tmp_path.glob("turn*.log")),
    )
    try:
        # Ready when an allocation with good credentials succeeds (bounded).
        deadline = time.monotonic() + 15
        while True:
            creds = mint(secret, "probe", 600)
            try:
                async with asyncio.timeout(3), allocation(port, creds.username, creds.credential):
                    break
            except (OSError, TimeoutError, ConnectionError, aioice.stun.TransactionError):
                assert proc.poll() is None, "coturn exited at start"
                assert time.monotonic() < deadline, "coturn did not answer within 15 s"
                await asyncio.sleep(0.2)
        yield port, secret
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


async def test_device_minted_credentials_allocate_and_bad_ones_do_not(
    coturn: tuple[int, str],
) -> None:
    port, secret = coturn
    good = mint(secret, "alice", 600)
    async with allocation(port, good.username, good.credential) as protocol:
        assert protocol.relayed_address is not None
        assert protocol.relayed_address[0] == "127.0.0.1"
    for username, credential in (
        (good.username, mint("not-the-secret", "alice", 600).credential),
        (mint(secret, "alice", -60).username, mint(secret, "alice", -60).credential),  # expired
    ):
        with pytest.raises(aioice.stun.TransactionFailed) as failed:
            async with allocation(port, username, credential):
                pass
        assert failed.value.response.attributes["ERROR-CODE"][0] == 401


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        ("127.0.0.1", False),  # loopback: the TURN host's own services
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),
        ("224.0.0.251", False),  # multicast (mDNS)
        ("10.99.0.5", True),  # inside --turn-allow-peer 10.99.0.0/16
    ],
)
async def test_relay_refuses_private_peers_except_allowed_ones(
    coturn: tuple[int, str], peer: str, allowed: bool
) -> None:
    port, secret = coturn
    creds = mint(secret, "alice", 600)
    async with allocation(port, creds.username, creds.credential) as protocol:
        if allowed:
            await protocol.channel_bind(0x4000, (peer, 9))
        else:
            with pytest.raises(aioice.stun.TransactionFailed) as refused:
                await protocol.channel_bind(0x4000, (peer, 9))
            assert refused.value.response.attributes["ERROR-CODE"][0] == 403
